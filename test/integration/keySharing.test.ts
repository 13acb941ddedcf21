/**
 * Key requests and forwarding among a user's own devices, and withheld keys, through a real Synapse.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import type { MatrixClient } from "../../src/index.js";
import type { SynapseHandle } from "../harness/synapse.js";
import { PASSWORD, Recorder, startClient, synapse, tempDir, uniqueName, waitUntil } from "./helpers.js";

describe("key sharing among own devices through a real Synapse", { timeout: 240_000 }, () => {
  let hs: SynapseHandle;
  let alice = "";
  let bobId = "";
  let roomId = "";
  const clients: MatrixClient[] = [];
  let a1: { client: MatrixClient; rec: Recorder };
  let bob: { client: MatrixClient; rec: Recorder };
  const track = <T extends { client: MatrixClient }>(c: T): T => {
    clients.push(c.client);
    return c;
  };

  before(async () => {
    hs = await synapse();
    alice = (await hs.registerUser(uniqueName("ksalice"), PASSWORD)).userId;
    bobId = (await hs.registerUser(uniqueName("ksbob"), PASSWORD)).userId;
    a1 = track(await startClient(hs, alice, tempDir()));
    bob = track(await startClient(hs, bobId, tempDir()));
    const room = await bob.client.createRoom({ encrypted: true, invite: [alice] });
    roomId = room.roomId;
    await a1.rec.waitFor(() => a1.client.getRooms().some((r) => r.roomId === roomId), "invite");
    await a1.client.joinRoom(roomId);
    await bob.rec.waitFor(() => bob.rec.events.some((e) => e.type === "m.room.member" && e.stateKey === alice && e.content.membership === "join"), "join");
    await room.sendText("old secret 1");
    await room.sendText("old secret 2");
    await a1.rec.waitFor(() => a1.rec.bodies(roomId).includes("old secret 2"), "A1 reading");
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
  });

  /** `c` learns A1's device and marks it verified: forwarded keys are accepted only from verified own devices. */
  const verifyA1On = async (c: MatrixClient, name: string): Promise<void> => {
    await waitUntil(async () => (await c.getDevices(alice)).some((d) => d.deviceId === a1.client.deviceId), `${name} seeing A1`);
    await (await c.getDevice(alice, a1.client.deviceId!))!.setVerified(true);
  };

  it("a new device requests keys, the approved request is answered, history decrypts and the forward listener fires", async () => {
    const requests: Record<string, boolean>[] = [];
    // A1 answers only once A2 has verified A1 (a forward from an unverified device would be refused).
    let a2VerifiedA1!: () => void;
    const verified = new Promise<void>((resolve) => (a2VerifiedA1 = resolve));
    a1.client.addKeyRequestListener((devices, answer) => {
      requests.push(Object.fromEntries(Object.entries(devices).map(([id, d]) => [id, d.verified])));
      void verified.then(() => answer(Object.keys(devices).filter((id) => id.startsWith("A2"))));
    });
    const a2 = track(await startClient(hs, alice, tempDir(), { deviceId: `A2${Date.now()}`, noStart: true }));
    const forwarded: string[] = [];
    await a2.client.addKeyForwardListener((sessionId) => forwarded.push(sessionId));
    a2.client.start();
    await a2.rec.waitFor(() => a2.client.getRooms().some((r) => r.roomId === roomId), "A2 sync");
    const history = await a2.client.getRoom(roomId).getHistory(50);
    const utd = history.filter((e) => "code" in e);
    assert.ok(utd.length >= 2, "A2 should not be able to decrypt history yet");
    assert.ok(utd.every((e) => "code" in e && e.code === "missing_session"));
    await verifyA1On(a2.client, "A2");
    a2VerifiedA1();
    // A1 must know A2's device to answer it.
    await waitUntil(async () => (await a1.client.getDevices(alice)).some((d) => d.deviceId === a2.client.deviceId), "A1 seeing A2");
    await a2.rec.waitFor(() => a2.rec.bodies(roomId).includes("old secret 2") && a2.rec.bodies(roomId).includes("old secret 1"), "A2 decrypting history via forwarded keys", 60_000);
    const late = a2.rec.messages(roomId).find((e) => e.content.body === "old secret 1")!;
    assert.equal(late.lateDecryption, true);
    assert.equal(late.encryption?.verification, "unauthenticated");
    assert.deepEqual(late.encryption?.forwardingChain, [a1.client.getIdentityKey()]);
    assert.ok(forwarded.includes(late.encryption!.sessionId));
    assert.ok(requests.length >= 1);
  });

  it("an unapproved device and another user get nothing", async () => {
    const a3 = track(await startClient(hs, alice, tempDir(), { deviceId: `A3${Date.now()}`, noStart: true }));
    const forwarded: string[] = [];
    await a3.client.addKeyForwardListener((s) => forwarded.push(s));
    a3.client.start();
    await a3.rec.waitFor(() => a3.client.getRooms().some((r) => r.roomId === roomId), "A3 sync");
    await a3.client.getRoom(roomId).getHistory(50); // queues the requests; A1's listener approves only A2*
    // Another user asks Alice's devices for the same sessions in the clear.
    const sample = a1.rec.messages(roomId)[0]!;
    await bob.client.sendToDevice("m.room_key_request", {
      [alice]: { "*": { action: "request", request_id: "bobreq", requesting_device_id: bob.client.deviceId, body: { algorithm: "m.megolm.v1.aes-sha2", room_id: roomId, sender_key: sample.encryption!.senderCurve25519, session_id: sample.encryption!.sessionId } } },
    });
    await new Promise((r) => setTimeout(r, 4000));
    assert.deepEqual(forwarded, []);
    assert.ok(!a3.rec.bodies(roomId).includes("old secret 1"));
    await a3.client.close();
  });

  it("withheld codes reach the recipient", async () => {
    const a1dev = (await bob.client.getDevices(alice)).find((d) => d.deviceId === a1.client.deviceId)!;
    await a1dev.setBlacklisted(true);
    await bob.client.getRoom(roomId).sendText("not for alice's first device");
    await a1.rec.waitFor(() => a1.rec.failures.some((f) => f.code === "withheld"), "A1's withheld failure");
    const f = a1.rec.failures.find((x) => x.code === "withheld")!;
    assert.equal(f.withheldCode, "m.blacklisted");
    await a1dev.setBlacklisted(false);
  });

  it("an outstanding request survives a restart and is answered afterwards", async () => {
    const dir = tempDir();
    const deviceId = `A4${Date.now()}`;
    let approve = false;
    a1.client.addKeyRequestListener((devices, answer) => {
      void answer(approve ? Object.keys(devices).filter((id) => id === deviceId) : []);
    });
    const a4 = await startClient(hs, alice, dir, { deviceId, noStart: true });
    await a4.client.addKeyForwardListener(() => undefined);
    a4.client.start();
    await a4.rec.waitFor(() => a4.client.getRooms().some((r) => r.roomId === roomId), "A4 sync");
    await a4.client.getRoom(roomId).getHistory(50);
    await verifyA1On(a4.client, "A4"); // persisted: still verified after the restart
    await new Promise((r) => setTimeout(r, 2000)); // the requests go out and are refused
    await a4.client.close();
    approve = true;
    const again = track(await startClient(hs, alice, dir, { deviceId, noStart: true }));
    await again.client.addKeyForwardListener(() => undefined);
    again.client.start();
    await again.rec.waitFor(() => again.rec.bodies(roomId).includes("old secret 1"), "A4 decrypting after its restart", 60_000);
  });
});
