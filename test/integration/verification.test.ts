/**
 * Device verification and trust policy between real SDK clients (each with its own worker and
 * SQLite store) through a real Synapse on 127.0.0.1: blacklisting, verifyDevices and its
 * per-room override, verification status of received events and its persistence, and a forged
 * room key sent by a hand-driven libolm device ("Mallory").
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import Olm from "@matrix-org/olm";
import { Device, UnknownDevicesError, type MatrixClient } from "../../src/index.js";
import type { RoomEvent, UndecryptableEvent } from "../../src/client/events.js";
import type { SynapseHandle } from "../harness/synapse.js";
import { OlmPeer } from "../support/olmPeer.js";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PASSWORD, Recorder, startClient, synapse, uniqueName } from "./helpers.js";

type Json = Record<string, unknown>;
type Client = { client: MatrixClient; rec: Recorder };

const MEGOLM_ALG = "m.megolm.v1.aes-sha2";
/** How long to watch for something that must NOT happen (never used to wait for a condition). */
const ABSENCE_MS = 2500;

/** Temp folders, removed at exit with one listener (helpers.tempDir adds one listener per folder). */
const tempDirs: string[] = [];
process.once("exit", () => {
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
});
function tempDir(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.push(d);
  return d;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Poll an async condition (e.g. the worker's device list) until it holds. */
async function waitUntil(pred: () => Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(150);
  }
}

async function knowsDevices(c: MatrixClient, userId: string, deviceIds: string[]): Promise<boolean> {
  const ds = await c.getDevices(userId);
  return deviceIds.every((id) => ds.some((d) => d.deviceId === id && !d.deleted));
}

const memberJoined = (rec: Recorder, roomId: string, userId: string): boolean =>
  rec.events.some((e) => e.roomId === roomId && e.type === "m.room.member" && e.stateKey === userId && e.content.membership === "join");

const messageByBody = (rec: Recorder, roomId: string, body: string): RoomEvent | undefined => rec.messages(roomId).find((e) => e.content.body === body);

const failureFor = (rec: Recorder, eventId: string): UndecryptableEvent | undefined => rec.failures.find((f) => f.eventId === eventId);

/** Device IDs per user of an UnknownDevicesError. */
function listed(err: UnknownDevicesError): Record<string, string[]> {
  return Object.fromEntries(Object.entries(err.userDevices).map(([u, ds]) => [u, (ds as { deviceId: string }[]).map((d) => d.deviceId).sort()]));
}

async function sendExpectingUnknownDevices(send: Promise<string>): Promise<UnknownDevicesError> {
  let caught: unknown = null;
  try {
    await send;
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof UnknownDevicesError, `expected UnknownDevicesError, got ${caught === null ? "success" : String(caught)}`);
  return caught;
}

describe("device verification and trust policy through a real Synapse", { timeout: 300_000 }, () => {
  let hs: SynapseHandle;
  const clients: MatrixClient[] = [];
  const track = <T extends Client>(c: T): T => {
    clients.push(c.client);
    return c;
  };

  before(async () => {
    hs = await synapse();
    await Olm.init();
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
  });

  /** Raw client-server API call with an access token. */
  async function api<T = Json>(token: string, method: string, path: string, body?: unknown): Promise<T> {
    const res = await fetch(`${hs.baseUrl}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { "content-type": "application/json" } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const json = (await res.json()) as T;
    if (!res.ok) throw new Error(`${method} ${path} failed: ${res.status} ${JSON.stringify(json)}`);
    return json;
  }

  /** Alice creates an encrypted room; the other users (one client each) join it; Alice sees them join. */
  async function encryptedRoom(owner: Client, joiners: Client[], extraInvites: string[] = []): Promise<string> {
    const users = [...new Set(joiners.map((j) => j.client.userId!))];
    const room = await owner.client.createRoom({ encrypted: true, invite: [...users, ...extraInvites] });
    const roomId = room.roomId;
    const byUser = new Map(joiners.map((j) => [j.client.userId!, j]));
    for (const j of byUser.values()) {
      await j.rec.waitFor(() => j.client.getRooms().some((r) => r.roomId === roomId), `${j.client.userId}'s invite`);
      await j.client.joinRoom(roomId);
    }
    for (const u of users) await owner.rec.waitFor(() => memberJoined(owner.rec, roomId, u), `${owner.client.userId} seeing ${u} join`);
    return roomId;
  }

  // -----------------------------------------------------------------------------------------------
  describe("blacklisting", () => {
    let alice: Client;
    let b1: Client;
    let b2: Client;
    let bobId = "";
    let roomId = "";

    before(async () => {
      const aliceId = (await hs.registerUser(uniqueName("blalice"), PASSWORD)).userId;
      bobId = (await hs.registerUser(uniqueName("blbob"), PASSWORD)).userId;
      alice = track(await startClient(hs, aliceId, tempDir("sdk-vf-alice-")));
      b1 = track(await startClient(hs, bobId, tempDir("sdk-vf-b1-")));
      b2 = track(await startClient(hs, bobId, tempDir("sdk-vf-b2-")));
      assert.notEqual(b1.client.deviceId, b2.client.deviceId);
      roomId = await encryptedRoom(alice, [b1]);
      await b2.rec.waitFor(() => memberJoined(b2.rec, roomId, bobId), "B2 seeing the room");
      await waitUntil(() => knowsDevices(alice.client, bobId, [b1.client.deviceId!, b2.client.deviceId!]), "Alice knowing both of Bob's devices");
    });

    it("a blacklisted device gets no key: B1 decrypts, B2 cannot and never receives the session", async (t) => {
      const dev = await alice.client.getDevice(bobId, b2.client.deviceId!);
      assert.ok(dev);
      await dev.setBlacklisted(true);
      assert.equal(dev.blacklisted, true);
      assert.equal((await alice.client.getDevice(bobId, b2.client.deviceId!))!.blacklisted, true);

      const eventId = await alice.client.getRoom(roomId).sendText("for B1 only");
      await b1.rec.waitFor(() => !!messageByBody(b1.rec, roomId, "for B1 only"), "B1 decrypting");
      const sessionId = messageByBody(b1.rec, roomId, "for B1 only")!.encryption!.sessionId;

      await b2.rec.waitFor(() => !!failureFor(b2.rec, eventId), "B2's undecryptable event");
      const f = failureFor(b2.rec, eventId)!;
      assert.equal(f.sessionId, sessionId);
      // The SDK tells blacklisted devices why (m.room_key.withheld, sent before the event and so
      // processed before it), so B2 reports "withheld" with m.blacklisted rather than a bare
      // "missing_session" (README: "Key sharing among your own devices").
      t.diagnostic(`B2's failure code: ${f.code}${f.withheldCode ? ` (${f.withheldCode})` : ""}`);
      assert.equal(f.code, "withheld", f.message);
      assert.equal(f.withheldCode, "m.blacklisted");

      await sleep(ABSENCE_MS);
      assert.ok(!b2.rec.roomKeys.some((k) => k.sessionId === sessionId), "B2 received the room key");
      assert.ok(!messageByBody(b2.rec, roomId, "for B1 only"), "B2 decrypted the message");
    });

    it("blacklisting a device that holds the current session rotates it", async () => {
      const dev = (await alice.client.getDevice(bobId, b2.client.deviceId!))!;
      await dev.setBlacklisted(false);
      await alice.client.getRoom(roomId).sendText("both devices");
      await b1.rec.waitFor(() => !!messageByBody(b1.rec, roomId, "both devices"), "B1 decrypting");
      await b2.rec.waitFor(() => !!messageByBody(b2.rec, roomId, "both devices"), "B2 decrypting once unblacklisted");
      const before = messageByBody(b1.rec, roomId, "both devices")!.encryption!.sessionId;
      assert.equal(messageByBody(b2.rec, roomId, "both devices")!.encryption!.sessionId, before, "B2 holds the current session");

      await dev.setBlacklisted(true);
      const eventId = await alice.client.getRoom(roomId).sendText("after blacklisting again");
      await b1.rec.waitFor(() => !!messageByBody(b1.rec, roomId, "after blacklisting again"), "B1 decrypting after the rotation");
      const afterId = messageByBody(b1.rec, roomId, "after blacklisting again")!.encryption!.sessionId;
      assert.notEqual(afterId, before, "the session was not rotated when a device holding it was blacklisted");
      assert.equal(messageByBody(b1.rec, roomId, "after blacklisting again")!.encryption!.messageIndex, 0);

      await b2.rec.waitFor(() => !!failureFor(b2.rec, eventId), "B2's undecryptable event");
      assert.equal(failureFor(b2.rec, eventId)!.sessionId, afterId);
      assert.equal(failureFor(b2.rec, eventId)!.code, "withheld");
      await sleep(ABSENCE_MS);
      assert.ok(!b2.rec.roomKeys.some((k) => k.sessionId === afterId), "the blacklisted device received the new session");
      assert.ok(!messageByBody(b2.rec, roomId, "after blacklisting again"));
    });
  });

  // -----------------------------------------------------------------------------------------------
  describe("verifyDevices", () => {
    let alice: Client; // verifyDevices: true
    let b1: Client;
    let b2: Client;
    let bobId = "";
    let roomId = "";

    before(async () => {
      const aliceId = (await hs.registerUser(uniqueName("vdalice"), PASSWORD)).userId;
      bobId = (await hs.registerUser(uniqueName("vdbob"), PASSWORD)).userId;
      alice = track(await startClient(hs, aliceId, tempDir("sdk-vd-alice-"), { verifyDevices: true }));
      b1 = track(await startClient(hs, bobId, tempDir("sdk-vd-b1-")));
      b2 = track(await startClient(hs, bobId, tempDir("sdk-vd-b2-")));
      roomId = await encryptedRoom(alice, [b1]);
      await b2.rec.waitFor(() => memberJoined(b2.rec, roomId, bobId), "B2 seeing the room");
      await waitUntil(() => knowsDevices(alice.client, bobId, [b1.client.deviceId!, b2.client.deviceId!]), "Alice knowing both of Bob's devices");
    });

    /** Alice's encrypted events in the room, as the server stores them. */
    async function aliceEncryptedEvents(): Promise<Json[]> {
      const res = await api<{ chunk: Json[] }>(alice.client.accessToken!, "GET", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/messages?dir=b&limit=100`);
      return res.chunk.filter((e) => e.type === "m.room.encrypted" && e.sender === alice.client.userId);
    }

    it("sending throws UnknownDevicesError listing exactly Bob's devices, and nothing is sent", async () => {
      const room = alice.client.getRoom(roomId);
      assert.equal(room.verifyDevices, true, "the room did not inherit the client's verifyDevices");
      const err = await sendExpectingUnknownDevices(room.sendText("refused text"));
      assert.deepEqual(listed(err), { [bobId]: [b1.client.deviceId!, b2.client.deviceId!].sort() });
      const b1Info = (err.userDevices[bobId] as { deviceId: string; ed25519: string }[]).find((d) => d.deviceId === b1.client.deviceId)!;
      assert.equal(b1Info.ed25519, b1.client.getFingerprint());
      assert.deepEqual(await aliceEncryptedEvents(), [], "an event reached the room");
    });

    it(
      "UnknownDevicesError.userDevices holds Device objects whose setters mark the devices",
      async () => {
        const err = await sendExpectingUnknownDevices(alice.client.getRoom(roomId).sendText("refused text"));
        const devices = err.userDevices[bobId] ?? [];
        assert.equal(devices.length, 2);
        for (const d of devices) assert.ok(d instanceof Device, `userDevices holds ${Object.prototype.toString.call(d)} with keys ${Object.keys(d as object).join(",")}, not Device`);
        const [first, second] = (devices as Device[]).sort((a, b) => (a.deviceId === b1.client.deviceId ? -1 : b.deviceId === b1.client.deviceId ? 1 : 0));
        await first!.setVerified(true);
        await second!.setIgnored(true);
        assert.equal((await alice.client.getDevice(bobId, b1.client.deviceId!))!.verified, true);
        assert.equal((await alice.client.getDevice(bobId, b2.client.deviceId!))!.ignored, true);
      },
    );

    it("after marking the devices (verified / ignored) resending succeeds; the refused text never arrived", async () => {
      await (await alice.client.getDevice(bobId, b1.client.deviceId!))!.setVerified(true);
      await (await alice.client.getDevice(bobId, b2.client.deviceId!))!.setIgnored(true);
      await alice.client.getRoom(roomId).sendText("accepted text");
      for (const b of [b1, b2]) await b.rec.waitFor(() => b.rec.bodies(roomId).includes("accepted text"), `${b.client.deviceId} decrypting`);
      for (const b of [b1, b2]) {
        assert.ok(!b.rec.bodies(roomId).includes("refused text"), "the refused text arrived");
        assert.deepEqual(b.rec.failures.filter((f) => f.roomId === roomId), [], "an undecryptable event arrived");
        assert.equal(new Set(b.rec.roomKeys.filter((k) => k.roomId === roomId).map((k) => k.sessionId)).size, 1, "more than one room key was shared");
      }
      assert.equal((await aliceEncryptedEvents()).length, 1, "exactly the one accepted message is in the room");
    });

    it("a device that appears afterwards triggers the error again, until it is marked (blacklisted here)", async () => {
      const b3 = track(await startClient(hs, bobId, tempDir("sdk-vd-b3-")));
      await waitUntil(() => knowsDevices(alice.client, bobId, [b3.client.deviceId!]), "Alice learning about B3");
      const err = await sendExpectingUnknownDevices(alice.client.getRoom(roomId).sendText("refused again"));
      assert.deepEqual(listed(err), { [bobId]: [b3.client.deviceId!] });

      await (await alice.client.getDevice(bobId, b3.client.deviceId!))!.setBlacklisted(true);
      const eventId = await alice.client.getRoom(roomId).sendText("b3 is blacklisted");
      for (const b of [b1, b2]) await b.rec.waitFor(() => b.rec.bodies(roomId).includes("b3 is blacklisted"), `${b.client.deviceId} decrypting`);
      await b3.rec.waitFor(() => !!failureFor(b3.rec, eventId), "B3's undecryptable event");
      for (const b of [b1, b2, b3]) assert.ok(!b.rec.bodies(roomId).includes("refused again"), "the refused text arrived");
      assert.equal((await aliceEncryptedEvents()).length, 2);
    });

    it("per-room override: client off + room on → error; client on + room off → success", async () => {
      const carolId = (await hs.registerUser(uniqueName("vdcarol"), PASSWORD)).userId;
      const daveId = (await hs.registerUser(uniqueName("vddave"), PASSWORD)).userId;
      const carol = track(await startClient(hs, carolId, tempDir("sdk-vd-carol-")));
      const dave = track(await startClient(hs, daveId, tempDir("sdk-vd-dave-"))); // verifyDevices off (default)
      assert.equal(dave.client.verifyDevices, false);

      // Client off, room on.
      const r1 = await encryptedRoom(dave, [carol]);
      await waitUntil(() => knowsDevices(dave.client, carolId, [carol.client.deviceId!]), "Dave knowing Carol's device");
      const room1 = dave.client.getRoom(r1);
      assert.equal(room1.verifyDevices, false);
      room1.verifyDevices = true;
      const err1 = await sendExpectingUnknownDevices(room1.sendText("dave refused"));
      assert.deepEqual(listed(err1), { [carolId]: [carol.client.deviceId!] });
      room1.verifyDevices = false;
      await room1.sendText("dave accepted");
      await carol.rec.waitFor(() => carol.rec.bodies(r1).includes("dave accepted"), "Carol decrypting Dave's message");
      assert.ok(!carol.rec.bodies(r1).includes("dave refused"));

      // Client on (Alice), room off. Carol's device is unknown to Alice, so the client default refuses first.
      const r2 = await encryptedRoom(alice, [carol]);
      await waitUntil(() => knowsDevices(alice.client, carolId, [carol.client.deviceId!]), "Alice knowing Carol's device");
      const room2 = alice.client.getRoom(r2);
      assert.equal(room2.verifyDevices, true);
      const err2 = await sendExpectingUnknownDevices(room2.sendText("alice refused"));
      assert.deepEqual(Object.keys(listed(err2)), [carolId]);
      room2.verifyDevices = false;
      await room2.sendText("alice accepted with the room override");
      await carol.rec.waitFor(() => carol.rec.bodies(r2).includes("alice accepted with the room override"), "Carol decrypting Alice's message");
      assert.ok(!carol.rec.bodies(r2).includes("alice refused"));
      // The first room still follows the client setting.
      assert.equal(alice.client.getRoom(roomId).verifyDevices, true);
    });
  });

  // -----------------------------------------------------------------------------------------------
  describe("verification status of received events, and after a restart", () => {
    let alice: Client;
    let aliceDir = "";
    let aliceId = "";
    let b1: Client;
    let b2: Client;
    let bobId = "";
    let roomId = "";

    before(async () => {
      aliceId = (await hs.registerUser(uniqueName("vsalice"), PASSWORD)).userId;
      bobId = (await hs.registerUser(uniqueName("vsbob"), PASSWORD)).userId;
      aliceDir = tempDir("sdk-vs-alice-");
      alice = track(await startClient(hs, aliceId, aliceDir, { restoreDeviceId: true }));
      b1 = track(await startClient(hs, bobId, tempDir("sdk-vs-b1-")));
      b2 = track(await startClient(hs, bobId, tempDir("sdk-vs-b2-")));
      roomId = await encryptedRoom(alice, [b1]);
      await b2.rec.waitFor(() => memberJoined(b2.rec, roomId, bobId), "B2 seeing the room");
    });

    it("unverified before Bob verifies Alice's device, verified after; Alice's own events are 'own'", async () => {
      const room = alice.client.getRoom(roomId);
      await room.sendText("before verification");
      await b1.rec.waitFor(() => !!messageByBody(b1.rec, roomId, "before verification"), "B1 decrypting");
      const ev1 = messageByBody(b1.rec, roomId, "before verification")!;
      assert.equal(ev1.encryption?.verification, "unverified");
      assert.equal(ev1.encryption?.senderDeviceId, alice.client.deviceId);
      assert.equal(ev1.encryption?.claimedEd25519, alice.client.getFingerprint());

      await waitUntil(async () => (await b1.client.getDevice(aliceId, alice.client.deviceId!)) !== null, "B1 knowing Alice's device");
      const aliceDev = (await b1.client.getDevice(aliceId, alice.client.deviceId!))!;
      assert.equal(aliceDev.ed25519, alice.client.getFingerprint(), "fingerprint compared out of band");
      await aliceDev.setVerified(true);
      assert.equal(aliceDev.verified, true);

      await room.sendText("after verification");
      await b1.rec.waitFor(() => !!messageByBody(b1.rec, roomId, "after verification"), "B1 decrypting");
      assert.equal(messageByBody(b1.rec, roomId, "after verification")!.encryption?.verification, "verified");
      // Trust is per device: B2 did not verify Alice.
      await b2.rec.waitFor(() => !!messageByBody(b2.rec, roomId, "after verification"), "B2 decrypting");
      assert.equal(messageByBody(b2.rec, roomId, "after verification")!.encryption?.verification, "unverified");

      await alice.rec.waitFor(() => !!messageByBody(alice.rec, roomId, "after verification"), "Alice seeing her own message");
      for (const body of ["before verification", "after verification"]) {
        const own = messageByBody(alice.rec, roomId, body)!;
        assert.equal(own.sender, aliceId);
        assert.equal(own.encryption?.verification, "own");
      }
    });

    it("trust flags and verification statuses survive a restart on the same store", async () => {
      const b1Dev = b1.client.deviceId!;
      const b2Dev = b2.client.deviceId!;
      await waitUntil(() => knowsDevices(alice.client, bobId, [b1Dev, b2Dev]), "Alice knowing both of Bob's devices");
      await (await alice.client.getDevice(bobId, b1Dev))!.setVerified(true);
      const d2 = (await alice.client.getDevice(bobId, b2Dev))!;
      await d2.setIgnored(true);
      await d2.setBlacklisted(true);

      await b1.client.getRoom(roomId).sendText("from b1");
      await b2.client.getRoom(roomId).sendText("from b2");
      await alice.rec.waitFor(() => !!messageByBody(alice.rec, roomId, "from b1") && !!messageByBody(alice.rec, roomId, "from b2"), "Alice decrypting Bob's devices");
      assert.equal(messageByBody(alice.rec, roomId, "from b1")!.encryption?.verification, "verified");
      assert.equal(messageByBody(alice.rec, roomId, "from b2")!.encryption?.verification, "unverified");

      const flags = async (c: MatrixClient): Promise<Record<string, [boolean, boolean, boolean]>> => {
        const out: Record<string, [boolean, boolean, boolean]> = {};
        for (const d of await c.getDevices(bobId)) out[d.deviceId] = [d.verified, d.blacklisted, d.ignored];
        return out;
      };
      const statuses = async (c: MatrixClient): Promise<Record<string, string>> => {
        const out: Record<string, string> = {};
        for (const e of await c.getRoom(roomId).getHistory(100)) {
          if ("code" in e) out[e.eventId] = `undecryptable:${e.code}`;
          else if (e.encryption) out[e.eventId] = `${String(e.content.body)}:${e.encryption.verification}`;
        }
        return out;
      };
      const flagsBefore = await flags(alice.client);
      assert.deepEqual(flagsBefore[b1Dev], [true, false, false]);
      assert.deepEqual(flagsBefore[b2Dev], [false, true, true]);
      const historyBefore = await statuses(alice.client);
      assert.deepEqual(
        Object.values(historyBefore).sort(),
        ["after verification:own", "before verification:own", "from b1:verified", "from b2:unverified"],
      );

      const deviceId = alice.client.deviceId;
      await alice.client.close();
      alice = track(await startClient(hs, aliceId, aliceDir, { restoreDeviceId: true }));
      assert.equal(alice.client.deviceId, deviceId);
      assert.deepEqual(await flags(alice.client), flagsBefore);
      const d1 = (await alice.client.getDevice(bobId, b1Dev))!;
      assert.deepEqual([d1.verified, d1.blacklisted, d1.ignored], [true, false, false]);
      assert.deepEqual(await statuses(alice.client), historyBefore);

      // Live events after the restart use the same flags.
      await b1.client.getRoom(roomId).sendText("from b1 after restart");
      await alice.rec.waitFor(() => !!messageByBody(alice.rec, roomId, "from b1 after restart"), "restarted Alice decrypting");
      assert.equal(messageByBody(alice.rec, roomId, "from b1 after restart")!.encryption?.verification, "verified");
    });
  });

  // -----------------------------------------------------------------------------------------------
  describe("forged room keys from a hand-driven libolm device (Mallory)", () => {
    let alice: Client;
    let bob: Client;
    let aliceId = "";
    let bobId = "";
    let malloryId = "";
    let roomId = "";
    const toDeviceFailures: { sender: string; type: string; code: string; message: string }[] = [];

    /** One of Mallory's devices: a raw libolm device (test/support/olmPeer.ts) and an access token. */
    class RawDevice extends OlmPeer {
      constructor(
        userId: string,
        deviceId: string,
        readonly token: string,
      ) {
        super(userId, deviceId);
      }
      /** Upload device keys signed per spec (ed25519 over canonical JSON without signatures/unsigned). */
      async uploadDeviceKeys(): Promise<void> {
        await api(this.token, "POST", "/_matrix/client/v3/keys/upload", { device_keys: this.deviceKeys() });
      }
      /** Claim one of the target's one-time keys and send it an Olm-encrypted event whose plaintext claims `claimedEd25519`. */
      async sendOlm(target: MatrixClient, type: string, content: Json, claimedEd25519: string): Promise<void> {
        const claimed = await api<{ one_time_keys: Record<string, Record<string, Record<string, { key: string }>>> }>(this.token, "POST", "/_matrix/client/v3/keys/claim", {
          one_time_keys: { [target.userId!]: { [target.deviceId!]: "signed_curve25519" } },
        });
        const keyObj = Object.values(claimed.one_time_keys[target.userId!]?.[target.deviceId!] ?? {})[0];
        assert.ok(keyObj, "no one-time key could be claimed for the target");
        const to = { userId: target.userId!, deviceId: target.deviceId!, curve25519: target.getIdentityKey(), ed25519: target.getFingerprint() };
        this.openSession(to, keyObj.key, true);
        const ev = this.olmToDevice(to, type, content, { plaintextOverrides: { keys: { ed25519: claimedEd25519 } } });
        await api(this.token, "PUT", `/_matrix/client/v3/sendToDevice/m.room.encrypted/forge${Date.now()}${Math.random().toString(36).slice(2)}`, {
          messages: { [target.userId!]: { [target.deviceId!]: ev.content } },
        });
      }
      /** Send a Megolm-encrypted message to the room with `og`. */
      async sendMegolm(room: string, og: Olm.OutboundGroupSession, body: string): Promise<string> {
        const ciphertext = og.encrypt(JSON.stringify({ type: "m.room.message", content: { msgtype: "m.text", body }, room_id: room }));
        const res = await api<{ event_id: string }>(this.token, "PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(room)}/send/m.room.encrypted/mg${Date.now()}${Math.random().toString(36).slice(2)}`, {
          algorithm: MEGOLM_ALG,
          sender_key: this.curve25519,
          session_id: og.session_id(),
          device_id: this.deviceId,
          ciphertext,
        });
        return res.event_id;
      }
    }
    let m1: RawDevice;

    before(async () => {
      aliceId = (await hs.registerUser(uniqueName("fgalice"), PASSWORD)).userId;
      bobId = (await hs.registerUser(uniqueName("fgbob"), PASSWORD)).userId;
      const mallory = await hs.registerUser(uniqueName("fgmallory"), PASSWORD);
      malloryId = mallory.userId;
      m1 = new RawDevice(malloryId, mallory.deviceId, mallory.accessToken);
      await m1.uploadDeviceKeys();
      alice = track(await startClient(hs, aliceId, tempDir("sdk-fg-alice-")));
      bob = track(await startClient(hs, bobId, tempDir("sdk-fg-bob-")));
      bob.client.on("toDevice.failure", (f) => toDeviceFailures.push(f));
      roomId = await encryptedRoom(alice, [bob], [malloryId]);
      await api(m1.token, "POST", `/_matrix/client/v3/join/${encodeURIComponent(roomId)}`, {});
      await bob.rec.waitFor(() => memberJoined(bob.rec, roomId, malloryId), "Bob seeing Mallory join");
      // Bob verifies Alice's device and knows Mallory's (real) device.
      await waitUntil(() => knowsDevices(bob.client, aliceId, [alice.client.deviceId!]), "Bob knowing Alice's device");
      await (await bob.client.getDevice(aliceId, alice.client.deviceId!))!.setVerified(true);
      await waitUntil(() => knowsDevices(bob.client, malloryId, [m1.deviceId]), "Bob knowing Mallory's device");
      await alice.client.getRoom(roomId).sendText("genuine");
      await bob.rec.waitFor(() => !!messageByBody(bob.rec, roomId, "genuine"), "Bob decrypting Alice");
      assert.equal(messageByBody(bob.rec, roomId, "genuine")!.encryption?.verification, "verified");
    });
    after(() => m1?.free());

    it("a known device's m.room_key claiming Alice's ed25519 is refused (toDevice.failure sender_mismatch); its messages stay undecryptable", async () => {
      const og = new Olm.OutboundGroupSession();
      og.create();
      try {
        const failuresBefore = toDeviceFailures.length;
        await m1.sendOlm(bob.client, "m.room_key", { algorithm: MEGOLM_ALG, room_id: roomId, session_id: og.session_id(), session_key: og.session_key() }, alice.client.getFingerprint());
        await bob.rec.waitFor(() => toDeviceFailures.slice(failuresBefore).some((f) => f.sender === malloryId), "Bob refusing Mallory's forged key");
        const f = toDeviceFailures.slice(failuresBefore).find((x) => x.sender === malloryId)!;
        assert.equal(f.code, "sender_mismatch", f.message);

        const eventId = await m1.sendMegolm(roomId, og, "I am Alice, trust me");
        await bob.rec.waitFor(() => !!failureFor(bob.rec, eventId) || bob.rec.events.some((e) => e.eventId === eventId), "Bob handling Mallory's message");
        assert.ok(!bob.rec.events.some((e) => e.eventId === eventId), "the forged message was decrypted");
        assert.equal(failureFor(bob.rec, eventId)!.code, "missing_session");
        assert.ok(!bob.rec.roomKeys.some((k) => k.sessionId === og.session_id()), "the forged session was stored");
      } finally {
        og.free();
      }
    });

    it("a key from a device Bob does not know yet never yields 'verified', and is refused with sender_mismatch once the device is known", async (t) => {
      // Mallory logs in a second device and does not publish its keys (yet).
      const login = await fetch(`${hs.baseUrl}/_matrix/client/v3/login`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ type: "m.login.password", identifier: { type: "m.id.user", user: malloryId }, password: PASSWORD }),
      });
      const lj = (await login.json()) as { access_token: string; device_id: string };
      const m2 = new RawDevice(malloryId, lj.device_id, lj.access_token);
      const og = new Olm.OutboundGroupSession();
      og.create();
      try {
        const failuresBefore = toDeviceFailures.length;
        await m2.sendOlm(bob.client, "m.room_key", { algorithm: MEGOLM_ALG, room_id: roomId, session_id: og.session_id(), session_key: og.session_key() }, alice.client.getFingerprint());
        await bob.rec.waitFor(
          () => bob.rec.roomKeys.some((k) => k.sessionId === og.session_id()) || toDeviceFailures.slice(failuresBefore).some((f) => f.sender === malloryId),
          "Bob handling the forged key from Mallory's unknown device",
        );
        const accepted = bob.rec.roomKeys.some((k) => k.sessionId === og.session_id());

        const eventId = await m2.sendMegolm(roomId, og, "I am Alice's verified device");
        await bob.rec.waitFor(() => !!failureFor(bob.rec, eventId) || bob.rec.events.some((e) => e.eventId === eventId), "Bob handling Mallory's message");
        const live = bob.rec.events.find((e) => e.eventId === eventId);
        t.diagnostic(
          live
            ? `forged key from the unknown device was accepted; event decrypted with verification=${live.encryption?.verification}, claimedEd25519 ${live.encryption?.claimedEd25519 === alice.client.getFingerprint() ? "= Alice's fingerprint" : "!= Alice's fingerprint"}`
            : `forged key refused; event undecryptable: ${failureFor(bob.rec, eventId)!.code}`,
        );
        if (live) {
          // The SDK accepts room keys from devices it does not know (yet); the strongest guarantee
          // is that such events are never "verified" and are flagged as coming from an unknown device.
          assert.ok(accepted);
          assert.notEqual(live.encryption?.verification, "verified");
          assert.equal(live.encryption?.verification, "unknown_device");
          assert.equal(live.encryption?.senderDeviceId, null, "an unknown device's claimed ID must not be reported");
          assert.equal(live.sender, malloryId);
        } else {
          assert.ok(["sender_mismatch", "missing_session"].includes(failureFor(bob.rec, eventId)!.code));
        }

        // Once Mallory publishes the device's real keys, Bob learns them and refuses the session.
        await m2.uploadDeviceKeys();
        await waitUntil(() => knowsDevices(bob.client, malloryId, [m2.deviceId]), "Bob learning Mallory's second device");
        const history = await bob.client.getRoom(roomId).getHistory(50);
        const again = history.find((e) => e.eventId === eventId);
        assert.ok(again, "the event is not in the history");
        assert.ok("code" in again, `the forged event decrypted after the device became known (${JSON.stringify((again as RoomEvent).encryption)})`);
        if (live) assert.equal(again.code, "sender_mismatch");
      } finally {
        og.free();
        m2.free();
      }
    });
  });
});
