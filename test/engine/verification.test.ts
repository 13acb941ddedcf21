/**
 * Device verification and trust policy, at the engine layer (real libolm, memory stores, the
 * in-process KeyServer): recipient selection by trust flags, UnknownDevicesError contents,
 * deleted devices, flags on unknown devices, the verification status of decrypted events, and
 * sessions whose claimed keys do not match the sending device (sender_mismatch).
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { KeyServer, Peer, roomState } from "./helpers.js";
import type { OutgoingRequest, RoomDecryptResult, SyncChangesInput } from "../../src/protocol/api.js";
import { ErrorCode, UnknownDeviceKeysError, UnknownDevicesError } from "../../src/protocol/errors.js";
import { OlmPeer } from "../support/olmPeer.js";

const ROOM = "!verif:example.org";
const ALICE = "@alice:example.org";
const BOB = "@bob:example.org";
const CAROL = "@carol:example.org";
const MALLORY = "@mallory:example.org";
const MEGOLM_ALG = "m.megolm.v1.aes-sha2";
type Json = Record<string, unknown>;

function ok(r: RoomDecryptResult | undefined): RoomDecryptResult & { ok: true } {
  assert.ok(r, "no result");
  assert.equal(r.ok, true, r.ok ? "" : `${r.code}: ${r.message}`);
  return r as RoomDecryptResult & { ok: true };
}
function failed(r: RoomDecryptResult | undefined): RoomDecryptResult & { ok: false } {
  assert.ok(r, "no result");
  assert.equal(r.ok, false, "the event decrypted but should not have");
  return r as RoomDecryptResult & { ok: false };
}

/** Types of the to-device messages waiting for a device (without consuming them). */
function inboxTypes(server: KeyServer, userId: string, deviceId: string): string[] {
  return (server.inbox.get(`${userId}|${deviceId}`) ?? []).map((e) => String(e.type));
}
function clearInboxes(server: KeyServer): void {
  for (const k of server.inbox.keys()) server.inbox.set(k, []);
}

/**
 * Alice (A) and the given devices of Bob (and optionally Carol), all joined to ROOM, every
 * engine knowing every device.
 */
async function world(bobDevices: string[], carolDevices: string[] = []): Promise<{ server: KeyServer; alice: Peer; peers: Map<string, Peer> }> {
  const server = new KeyServer();
  const alice = await Peer.create(server, ALICE, "A");
  const peers = new Map<string, Peer>();
  for (const d of bobDevices) peers.set(d, await Peer.create(server, BOB, d));
  for (const d of carolDevices) peers.set(d, await Peer.create(server, CAROL, d));
  const members: Record<string, string> = { [ALICE]: "join", [BOB]: "join" };
  if (carolDevices.length) members[CAROL] = "join";
  for (const p of [alice, ...peers.values()]) {
    await p.sync({ rooms: [roomState(ROOM, members)] });
    await p.flush();
  }
  return { server, alice, peers };
}

/** Run Alice's key share for ROOM (query, claim, share) with or without verifyDevices. */
async function share(p: Peer, verify: boolean): Promise<OutgoingRequest[]> {
  for (let i = 0; i < 4; i++) {
    const step = await p.engine.prepareRoomKeyShare(ROOM, verify);
    if (step.ready) break;
    await p.send(step.request);
  }
  const reqs = await p.engine.shareRoomKey(ROOM, verify);
  for (const r of reqs) await p.send(r);
  return reqs;
}

/** Device IDs addressed by the to-device requests of one type. */
function addressed(reqs: OutgoingRequest[], eventType: string): string[] {
  const out: string[] = [];
  for (const r of reqs) {
    if (r.kind !== "to_device" || r.eventType !== eventType) continue;
    const msgs = (JSON.parse(r.body) as { messages: Record<string, Json> }).messages;
    for (const [u, devs] of Object.entries(msgs)) for (const d of Object.keys(devs)) out.push(`${u}/${d}`);
  }
  return out.sort();
}

/**
 * A raw libolm device driven by the test (no engine; test/support/olmPeer.ts): it publishes signed
 * device keys on the KeyServer (or not), claims a recipient's one-time key, and sends hand-made
 * Olm and Megolm messages with whatever claims it likes.
 */
class RawDevice extends OlmPeer {
  constructor(
    readonly server: KeyServer,
    userId: string,
    deviceId: string,
  ) {
    super(userId, deviceId);
  }
  publish(): void {
    if (!this.server.deviceKeys.has(this.userId)) this.server.deviceKeys.set(this.userId, new Map());
    this.server.deviceKeys.get(this.userId)!.set(this.deviceId, this.deviceKeys());
  }
  /** An Olm-encrypted to-device event for `to`, whose plaintext claims `claimedEd25519` as our key. */
  olmTo(to: Peer, type: string, content: Json, claimedEd25519: string): Json {
    const claim: OutgoingRequest = { id: "raw", kind: "keys_claim", body: JSON.stringify({ one_time_keys: { [to.userId]: { [to.deviceId]: "signed_curve25519" } } }) };
    const res = this.server.handle(this.userId, this.deviceId, claim) as { one_time_keys: Record<string, Record<string, Record<string, { key: string }>>> };
    this.openSession(to, Object.values(res.one_time_keys[to.userId]![to.deviceId]!)[0]!.key, true);
    return this.olmToDevice(to, type, content, { plaintextOverrides: { keys: { ed25519: claimedEd25519 } } });
  }
  /** A new Megolm outbound session: its ID, key, and a function encrypting room events with it. */
  megolm(): { sessionId: string; sessionKey: string; event: (body: string, eventId: string) => Json } {
    const { sessionId, sessionKey } = this.newMegolm("m");
    return { sessionId, sessionKey, event: (body, eventId) => this.megolmEvent("m", ROOM, { msgtype: "m.text", body }, eventId) };
  }
}

const devicesChanged = (...users: string[]): Partial<SyncChangesInput> => ({ deviceLists: { changed: users } });

describe("engine: device trust policy for recipient selection", () => {
  it("verified and ignored devices receive the key, blacklisted ones never do even when verified or ignored", async () => {
    const { server, alice } = await world(["V", "I", "BV", "BI", "VI"]);
    const flags: Record<string, { verified?: boolean; blacklisted?: boolean; ignored?: boolean }> = {
      V: { verified: true },
      I: { ignored: true },
      BV: { blacklisted: true, verified: true },
      BI: { blacklisted: true, ignored: true },
      VI: { verified: true, ignored: true },
    };
    for (const [d, f] of Object.entries(flags)) await alice.engine.setDeviceFlags(BOB, d, f);
    clearInboxes(server);

    const reqs = await share(alice, true); // every device has a decision: no error
    assert.deepEqual(addressed(reqs, "m.room.encrypted"), [`${BOB}/I`, `${BOB}/V`, `${BOB}/VI`]);
    assert.deepEqual(addressed(reqs, "m.room_key.withheld"), [`${BOB}/BI`, `${BOB}/BV`]);
    for (const d of ["BV", "BI"]) assert.deepEqual(inboxTypes(server, BOB, d), ["m.room_key.withheld"], `${d} got more than a withheld notice`);

    // The same with verifyDevices off: the flags still decide for blacklisted devices.
    const { server: s2, alice: a2 } = await world(["U", "BV"]);
    await a2.engine.setDeviceFlags(BOB, "BV", { blacklisted: true, verified: true });
    clearInboxes(s2);
    const reqs2 = await share(a2, false);
    assert.deepEqual(addressed(reqs2, "m.room.encrypted"), [`${BOB}/U`], "an unverified device gets the key when verifyDevices is off");
    assert.deepEqual(inboxTypes(s2, BOB, "BV"), ["m.room_key.withheld"]);
  });

  it("a blacklisted device that receives the withheld notice cannot decrypt, a verified one can", async () => {
    const { alice, peers } = await world(["V", "BV"]);
    await alice.engine.setDeviceFlags(BOB, "V", { verified: true });
    await alice.engine.setDeviceFlags(BOB, "BV", { verified: true, blacklisted: true });
    const ev = await alice.encrypt(ROOM, "only V", "$onlyV", true);
    const v = peers.get("V")!;
    const bv = peers.get("BV")!;
    assert.equal((await v.sync()).roomKeys.length, 1);
    assert.equal(JSON.parse(ok((await v.engine.decryptRoomEvents(ROOM, [ev]))[0]).plaintextJson).content.body, "only V");
    const bvSync = await bv.sync();
    assert.equal(bvSync.roomKeys.length, 0);
    const r = failed((await bv.engine.decryptRoomEvents(ROOM, [ev]))[0]);
    assert.equal(r.code, "withheld");
    assert.equal(r.withheldCode, "m.blacklisted");
  });

  it("unknown (unflagged) devices make verifyDevices fail; UnknownDevicesError lists exactly the offending devices", async () => {
    const { server, alice, peers } = await world(["BV", "BU", "BB", "BI"], ["CU"]);
    // Alice's second device, unflagged, is a recipient too; her current device never is.
    const a2 = await Peer.create(server, ALICE, "A2");
    await a2.sync({ rooms: [roomState(ROOM, { [ALICE]: "join", [BOB]: "join", [CAROL]: "join" })] });
    await alice.sync(devicesChanged(ALICE));
    await alice.flush();
    await alice.engine.setDeviceFlags(BOB, "BV", { verified: true });
    await alice.engine.setDeviceFlags(BOB, "BB", { blacklisted: true });
    await alice.engine.setDeviceFlags(BOB, "BI", { ignored: true });
    clearInboxes(server);

    let caught: unknown;
    try {
      await share(alice, true);
    } catch (e) {
      caught = e;
    }
    assert.ok(caught instanceof UnknownDevicesError, `expected UnknownDevicesError, got ${String(caught)}`);
    const listed = Object.fromEntries(Object.entries(caught.userDevices).map(([u, ds]) => [u, (ds as { deviceId: string }[]).map((d) => d.deviceId).sort()]));
    assert.deepEqual(listed, { [ALICE]: ["A2"], [BOB]: ["BU"], [CAROL]: ["CU"] });
    const bu = (caught.userDevices[BOB] as { userId: string; ed25519: string; verified: boolean; blacklisted: boolean; ignored: boolean }[])[0]!;
    assert.equal(bu.userId, BOB);
    assert.equal(bu.ed25519, peers.get("BU")!.ed25519);
    assert.deepEqual([bu.verified, bu.blacklisted, bu.ignored], [false, false, false]);

    // Nothing was sent to anybody, and no outbound session exists to encrypt with.
    assert.deepEqual([...server.inbox.values()].flat(), []);
    await assert.rejects(alice.engine.encryptRoomEvent(ROOM, "m.room.message", { body: "x" }));

    // shareRoomKey itself enforces the policy too (not only the preparation step).
    await assert.rejects(alice.engine.shareRoomKey(ROOM, true), UnknownDevicesError);

    // Deciding about the offenders (any flag) makes sending work.
    await alice.engine.setDeviceFlags(ALICE, "A2", { verified: true });
    await alice.engine.setDeviceFlags(BOB, "BU", { ignored: true });
    await alice.engine.setDeviceFlags(CAROL, "CU", { blacklisted: true });
    const reqs = await share(alice, true);
    assert.deepEqual(addressed(reqs, "m.room.encrypted"), [`${ALICE}/A2`, `${BOB}/BI`, `${BOB}/BU`, `${BOB}/BV`]);
    assert.deepEqual(addressed(reqs, "m.room_key.withheld"), [`${BOB}/BB`, `${CAROL}/CU`]);
  });

  it("deleted devices never receive keys, even verified, and do not trip verifyDevices", async () => {
    const { server, alice } = await world(["B1", "GONE", "GONE2"]);
    const first = await alice.encrypt(ROOM, "all three", "$all");
    assert.ok(inboxTypes(server, BOB, "GONE").includes("m.room.encrypted"));
    await alice.engine.setDeviceFlags(BOB, "GONE", { verified: true });
    await alice.engine.setDeviceFlags(BOB, "B1", { verified: true });
    // GONE and GONE2 (never flagged) are removed from the server's device list.
    server.deviceKeys.get(BOB)!.delete("GONE");
    server.deviceKeys.get(BOB)!.delete("GONE2");
    await alice.sync(devicesChanged(BOB));
    await alice.flush();
    const devices = alice.engine.getDevices(BOB);
    assert.deepEqual(
      devices.map((d) => [d.deviceId, d.deleted]).sort(),
      [["B1", false], ["GONE", true], ["GONE2", true]],
    );
    assert.equal(devices.find((d) => d.deviceId === "GONE")!.verified, true, "flags are kept on deleted devices");
    clearInboxes(server);

    const ev = await alice.encrypt(ROOM, "deleted ones are out", "$out", true);
    assert.notEqual((ev.content as Json).session_id, (first.content as Json).session_id, "the session held by deleted devices was not rotated");
    assert.deepEqual(inboxTypes(server, BOB, "GONE"), []);
    assert.deepEqual(inboxTypes(server, BOB, "GONE2"), []);
    assert.deepEqual(inboxTypes(server, BOB, "B1"), ["m.room.encrypted"]);
  });

  it("setting flags on a device (or user) whose keys are unknown throws UnknownDeviceKeysError", async () => {
    const { alice } = await world(["B1"]);
    await assert.rejects(alice.engine.setDeviceFlags(BOB, "NOSUCH", { verified: true }), UnknownDeviceKeysError);
    await assert.rejects(alice.engine.setDeviceFlags(BOB, "NOSUCH", { blacklisted: true }), UnknownDeviceKeysError);
    await assert.rejects(alice.engine.setDeviceFlags(BOB, "NOSUCH", { ignored: true }), UnknownDeviceKeysError);
    await assert.rejects(alice.engine.setDeviceFlags("@nobody:example.org", "X", { verified: true }), (e: unknown) => {
      assert.ok(e instanceof UnknownDeviceKeysError);
      assert.equal(e.code, ErrorCode.UnknownDeviceKeys);
      return true;
    });
    // Nothing was created for it.
    assert.deepEqual(alice.engine.getDevices(BOB).map((d) => d.deviceId), ["B1"]);
    assert.deepEqual(alice.engine.getDevices("@nobody:example.org"), []);
    // The flags are independent and each setter only changes its own flag.
    const info = await alice.engine.setDeviceFlags(BOB, "B1", { verified: true });
    assert.deepEqual([info.verified, info.blacklisted, info.ignored], [true, false, false]);
    const info2 = await alice.engine.setDeviceFlags(BOB, "B1", { ignored: true });
    assert.deepEqual([info2.verified, info2.blacklisted, info2.ignored], [true, false, true]);
    const info3 = await alice.engine.setDeviceFlags(BOB, "B1", { verified: false });
    assert.deepEqual([info3.verified, info3.blacklisted, info3.ignored], [false, false, true]);
  });
});

describe("engine: verification status of decrypted events", () => {
  it("own / unknown_device / unverified / verified, decided from the store at decryption time", async () => {
    const server = new KeyServer();
    const alice = await Peer.create(server, ALICE, "A");
    const bob = await Peer.create(server, BOB, "B");
    const members = { [ALICE]: "join", [BOB]: "join" };
    await alice.sync({ rooms: [roomState(ROOM, members)] });
    await alice.flush();
    // Bob has not seen the room yet, so he does not know Alice's device.
    const ev = await alice.encrypt(ROOM, "status", "$status");
    assert.equal(ok((await alice.engine.decryptRoomEvents(ROOM, [ev]))[0]).verification, "own");

    // Bob learns the room and the key in one sync, but has not queried Alice's devices yet.
    assert.equal((await bob.sync({ rooms: [roomState(ROOM, members)] })).roomKeys.length, 1);
    assert.deepEqual(bob.engine.getDevices(ALICE), []);
    const unknown = ok((await bob.engine.decryptRoomEvents(ROOM, [ev]))[0]);
    assert.equal(unknown.verification, "unknown_device");
    assert.equal(unknown.claimedEd25519, alice.ed25519);

    await bob.sync({ rooms: [roomState(ROOM, members)] });
    await bob.flush();
    assert.deepEqual(bob.engine.getDevices(ALICE).map((d) => d.deviceId), ["A"]);
    const unverified = ok((await bob.engine.decryptRoomEvents(ROOM, [ev]))[0]);
    assert.equal(unverified.verification, "unverified");
    assert.equal(unverified.senderDeviceId, "A");

    await bob.engine.setDeviceFlags(ALICE, "A", { verified: true });
    assert.equal(ok((await bob.engine.decryptRoomEvents(ROOM, [ev]))[0]).verification, "verified");
    // Ignoring a device does not make its events verified.
    await bob.engine.setDeviceFlags(ALICE, "A", { verified: false, ignored: true });
    assert.equal(ok((await bob.engine.decryptRoomEvents(ROOM, [ev]))[0]).verification, "unverified");

    // After a restart on the same store, the answer is the same.
    await bob.engine.setDeviceFlags(ALICE, "A", { verified: true });
    const bob2 = await Peer.create(server, BOB, "B", bob.store);
    assert.equal(ok((await bob2.engine.decryptRoomEvents(ROOM, [ev]))[0]).verification, "verified");
    const alice2 = await Peer.create(server, ALICE, "A", alice.store);
    assert.equal(ok((await alice2.engine.decryptRoomEvents(ROOM, [ev]))[0]).verification, "own");
  });

  it("an event whose device_id or sender contradicts the session's device is refused with sender_mismatch", async () => {
    const { alice, peers } = await world(["B"]);
    const bob = peers.get("B")!;
    await bob.engine.setDeviceFlags(ALICE, "A", { verified: true });
    const ev = await alice.encrypt(ROOM, "genuine", "$genuine");
    await bob.sync();
    assert.equal(ok((await bob.engine.decryptRoomEvents(ROOM, [ev]))[0]).verification, "verified");
    // A message whose device_id names another device than the one owning sender_key.
    const ev2 = await alice.encrypt(ROOM, "second", "$second");
    const lying = failed((await bob.engine.decryptRoomEvents(ROOM, [{ ...ev2, content: { ...(ev2.content as Json), device_id: "SOMEOTHER" } }]))[0]);
    assert.equal(lying.code, "sender_mismatch");
    const ev3 = await alice.encrypt(ROOM, "third", "$third");
    const wrongSender = failed((await bob.engine.decryptRoomEvents(ROOM, [{ ...ev3, sender: BOB }]))[0]);
    assert.equal(wrongSender.code, "sender_mismatch");
  });
});

describe("engine: forged room keys (claimed ed25519 of another device)", () => {
  it("a known device sending an m.room_key that claims Alice's ed25519 is refused (to-device sender_mismatch)", async () => {
    const { server, alice, peers } = await world(["B"]);
    const bob = peers.get("B")!;
    const mallory = new RawDevice(server, MALLORY, "M");
    mallory.publish();
    await bob.sync({ rooms: [roomState(ROOM, { [ALICE]: "join", [BOB]: "join", [MALLORY]: "join" })] });
    await bob.flush();
    assert.deepEqual(bob.engine.getDevices(MALLORY).map((d) => d.deviceId), ["M"]);
    await bob.engine.setDeviceFlags(ALICE, "A", { verified: true });
    await bob.engine.setDeviceFlags(MALLORY, "M", { verified: true }); // even a verified device cannot claim someone else's key

    const mg = mallory.megolm();
    const forged = mallory.olmTo(bob, "m.room_key", { algorithm: MEGOLM_ALG, room_id: ROOM, session_id: mg.sessionId, session_key: mg.sessionKey }, alice.ed25519);
    const res = await bob.sync({ toDevice: [forged] });
    assert.deepEqual(res.roomKeys, []);
    assert.deepEqual(res.toDeviceFailures.map((f) => [f.sender, f.code]), [[MALLORY, "sender_mismatch"]]);
    const r = failed((await bob.engine.decryptRoomEvents(ROOM, [mg.event("forged", "$forged")]))[0]);
    assert.equal(r.code, "missing_session");
    mallory.free();
  });

  it("a key accepted from a then-unknown device is never verified, and is refused with sender_mismatch once the device is known (and verified)", async () => {
    const { server, alice, peers } = await world(["B"]);
    const bob = peers.get("B")!;
    await bob.engine.setDeviceFlags(ALICE, "A", { verified: true });
    const mallory = new RawDevice(server, MALLORY, "M"); // keys not published yet
    const mg = mallory.megolm();
    const forged = mallory.olmTo(bob, "m.room_key", { algorithm: MEGOLM_ALG, room_id: ROOM, session_id: mg.sessionId, session_key: mg.sessionKey }, alice.ed25519);
    const res = await bob.sync({ toDevice: [forged] });
    const ev = mg.event("pretending to be verified", "$pretend");
    const r = (await bob.engine.decryptRoomEvents(ROOM, [ev]))[0]!;
    if (r.ok) {
      // Accepted while the sending device is unknown: it must not look verified.
      assert.equal(res.roomKeys.length, 1);
      assert.equal(r.verification, "unknown_device");
      assert.notEqual(r.verification, "verified");
    } else {
      assert.ok(["sender_mismatch", "missing_session"].includes(r.code), r.code);
    }

    // Bob learns Mallory's real device keys (and even verifies the device).
    mallory.publish();
    await bob.sync({ rooms: [roomState(ROOM, { [ALICE]: "join", [BOB]: "join", [MALLORY]: "join" })] });
    await bob.flush();
    await bob.engine.setDeviceFlags(MALLORY, "M", { verified: true });
    const again = failed((await bob.engine.decryptRoomEvents(ROOM, [ev]))[0]);
    assert.ok(["sender_mismatch", "missing_session"].includes(again.code), again.code);
    if (r.ok) assert.equal(again.code, "sender_mismatch");
    const later = failed((await bob.engine.decryptRoomEvents(ROOM, [mg.event("later", "$later")]))[0]);
    assert.ok(["sender_mismatch", "missing_session"].includes(later.code), later.code);
    mallory.free();
  });
});
