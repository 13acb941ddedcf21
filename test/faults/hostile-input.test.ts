/**
 * Hostile sync input through the REAL client sync path (main thread → crypto worker → SQLite),
 * served by a scripted fake homeserver (undici MockAgent). The attackers are raw-libolm devices
 * that hold real Olm sessions with the client, so their messages get past the cryptography and
 * exercise the checks behind it.
 *
 * Every hostile input must give a reason-coded failure (`room.undecryptable` with a code,
 * `toDevice.failure`) or a logged rejection; the client keeps syncing (each batch is processed
 * once: the fake server re-serves a batch the client failed on, as a real server does, so a
 * "poison pill" would stall the test); no key from an untrusted source is accepted; the worker
 * never crashes. Then a fast-check property feeds arbitrary and mutated /sync responses.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import type { MatrixClient } from "../../src/index.js";
import { FakeHomeserver, FAKE_SERVER_NAME, encryptedRoomState, isObj, joinedRoom, memberEvent } from "./fakeServer.js";
import { ClientEvents, LogCapture, fakeClient, waitFor } from "./helpers.js";
import { OlmPeer, initOlm, recipientFromUpload, type Recipient } from "../support/olmPeer.js";

type Json = Record<string, unknown>;

const ME = `@me:${FAKE_SERVER_NAME}`;
const PEER = `@peer:${FAKE_SERVER_NAME}`;
const MALLORY = `@mallory:${FAKE_SERVER_NAME}`;
const ROOM_A = `!roomA:${FAKE_SERVER_NAME}`;
const ROOM_B = `!roomB:${FAKE_SERVER_NAME}`;
const NOT_JOINED = `!notjoined:${FAKE_SERVER_NAME}`;
const ONE_MB = 1024 * 1024;

/** A client on a fake server, with peers holding Olm sessions to it. */
interface Rig {
  fake: FakeHomeserver;
  client: MatrixClient;
  ev: ClientEvents;
  logs: LogCapture;
  me: Recipient;
  otks: string[];
  peer: OlmPeer;
  /** Deliver a sync batch; resolves once the client committed it (throws if it never does). */
  deliver(batch: Json, timeoutMs?: number): Promise<number>;
}

async function makeRig(logs: LogCapture): Promise<Rig> {
  await initOlm();
  const fake = new FakeHomeserver(ME);
  const peer = new OlmPeer(PEER, "PEERDEV");
  fake.publishDevice(PEER, "PEERDEV", peer.deviceKeys());
  fake.publishOtks(PEER, "PEERDEV", peer.signedOtks(20));
  const client = fakeClient(fake, logs);
  const ev = new ClientEvents(client);
  await client.login(ME, "pw");
  const upload = fake.uploads.find((u) => u.status === 200 && isObj(u.body.device_keys))!.body;
  const { recipient: me, otks } = recipientFromUpload(upload, ME, client.deviceId!);
  assert.equal(me.curve25519, client.getIdentityKey());
  peer.openSession(me, otks[0]!);
  client.start();
  const deliver = async (batch: Json, timeoutMs = 15_000): Promise<number> => {
    const idx = fake.queueSync(batch);
    const token = FakeHomeserver.tokenAfter(idx);
    await waitFor(() => ev.syncs.includes(token), `the client to process sync batch ${idx} (a batch it cannot process is re-served forever)`, timeoutMs);
    return idx;
  };
  return { fake, client, ev, logs, me, otks, peer, deliver };
}

describe("hostile sync input (fake homeserver, real worker)", { timeout: 120_000 }, () => {
  const logs = new LogCapture();
  let r: Rig;
  const tried: string[] = [];
  const unsigned = (name: string): Json => ({ fault_case: name });
  const utdOf = (name: string) => r.ev.utds.find((u) => isObj(u.raw.unsigned) && u.raw.unsigned.fault_case === name);
  const decryptedOf = (name: string) => r.ev.events.find((e) => e.unsigned?.fault_case === name);

  before(async () => {
    r = await makeRig(logs);
    await r.deliver({
      rooms: { join: { [ROOM_A]: joinedRoom(encryptedRoomState(ROOM_A, PEER, [ME, PEER])), [ROOM_B]: joinedRoom(encryptedRoomState(ROOM_B, PEER, [ME, PEER])) } },
    });
    await waitFor(async () => (await r.client.getDevices(PEER)).some((d) => d.deviceId === "PEERDEV"), "the peer's device to be known");
    r.peer.newMegolm("A1");
    r.peer.newMegolm("B1");
    await r.deliver({ to_device: { events: [r.peer.olmToDevice(r.me, "m.room_key", r.peer.roomKeyContent("A1", ROOM_A)), r.peer.olmToDevice(r.me, "m.room_key", r.peer.roomKeyContent("B1", ROOM_B))] } });
    assert.equal(r.ev.roomKeys.length, 2, `room keys: ${JSON.stringify(r.ev.roomKeys)} failures: ${JSON.stringify(r.ev.toDeviceFailures)}`);
    // A first good message, to prove the setup.
    await r.deliver({ rooms: { join: { [ROOM_A]: joinedRoom([], [{ ...r.peer.megolmEvent("A1", ROOM_A, { msgtype: "m.text", body: "hello" }, r.fake.eventId()), unsigned: unsigned("setup") }]) } } });
    assert.equal(decryptedOf("setup")?.content.body, "hello");
  });

  after(async () => {
    await r?.client.close();
    await r?.fake.close();
    r?.peer.free();
  });

  it("hostile room events: each gets a reason code, none is emitted as decrypted", async () => {
    const A1 = (name: string, extra: (e: Json) => void = () => undefined): Json => {
      const e = { ...r.peer.megolmEvent("A1", ROOM_A, { msgtype: "m.text", body: `hostile ${name}` }, r.fake.eventId()), unsigned: unsigned(name) };
      extra(e);
      return e;
    };
    const content = (e: Json): Json => e.content as Json;
    const cases: { name: string; ev: Json; codes: string[] }[] = [
      { name: "truncated ciphertext", ev: A1("truncated ciphertext", (e) => (content(e).ciphertext = String(content(e).ciphertext).slice(0, 40))), codes: ["malformed"] },
      { name: "invalid base64 ciphertext", ev: A1("invalid base64 ciphertext", (e) => (content(e).ciphertext = "%%%not*base64%%%")), codes: ["malformed"] },
      {
        name: "bit-flipped ciphertext (bad MAC)",
        ev: A1("bit-flipped ciphertext (bad MAC)", (e) => {
          const c = String(content(e).ciphertext);
          const i = Math.floor(c.length / 2);
          content(e).ciphertext = c.slice(0, i) + (c[i] === "A" ? "B" : "A") + c.slice(i + 1);
        }),
        codes: ["malformed"],
      },
      { name: "unknown algorithm", ev: A1("unknown algorithm", (e) => (content(e).algorithm = "m.megolm.v2.aes-sha2")), codes: ["unknown_algorithm"] },
      { name: "Olm algorithm in a room event", ev: A1("Olm algorithm in a room event", (e) => (content(e).algorithm = "m.olm.v1.curve25519-aes-sha2")), codes: ["unknown_algorithm"] },
      { name: "algorithm missing", ev: A1("algorithm missing", (e) => delete content(e).algorithm), codes: ["unknown_algorithm", "malformed"] },
      { name: "session_id missing", ev: A1("session_id missing", (e) => delete content(e).session_id), codes: ["malformed"] },
      { name: "sender_key missing", ev: A1("sender_key missing", (e) => delete content(e).sender_key), codes: ["malformed"] },
      { name: "ciphertext not a string", ev: A1("ciphertext not a string", (e) => (content(e).ciphertext = { nested: [1, 2, 3] })), codes: ["malformed"] },
      { name: "content not an object", ev: A1("content not an object", (e) => (e.content = "just a string")), codes: ["malformed"] },
      { name: "event_id missing", ev: A1("event_id missing", (e) => delete e.event_id), codes: ["malformed"] },
      { name: "sender missing", ev: A1("sender missing", (e) => delete e.sender), codes: ["malformed"] },
      { name: "1.1 MB ciphertext", ev: A1("1.1 MB ciphertext", (e) => (content(e).ciphertext = "A".repeat(ONE_MB + 100_000))), codes: ["malformed"] },
      { name: "1 MB session_id", ev: A1("1 MB session_id", (e) => (content(e).session_id = "S".repeat(ONE_MB))), codes: ["malformed", "missing_session"] },
      { name: "1 MB sender_key", ev: A1("1 MB sender_key", (e) => (content(e).sender_key = "K".repeat(ONE_MB))), codes: ["malformed", "missing_session"] },
      { name: "room_id mismatch", ev: { ...r.peer.megolmEvent("A1", ROOM_B, { msgtype: "m.text", body: "meant for B" }, r.fake.eventId()), unsigned: unsigned("room_id mismatch") }, codes: ["room_mismatch"] },
      { name: "session of room B used in room A", ev: { ...r.peer.megolmEvent("B1", ROOM_A, { msgtype: "m.text", body: "B session in A" }, r.fake.eventId()), unsigned: unsigned("session of room B used in room A") }, codes: ["missing_session"] },
      { name: "event sender is not the session's owner", ev: A1("event sender is not the session's owner", (e) => (e.sender = MALLORY)), codes: ["sender_mismatch"] },
      { name: "device_id is not the session's device", ev: A1("device_id is not the session's device", (e) => (content(e).device_id = "OTHERDEV")), codes: ["sender_mismatch"] },
    ];
    await r.deliver({ rooms: { join: { [ROOM_A]: joinedRoom([], cases.map((c) => c.ev)) } } }, 30_000);
    const problems: string[] = [];
    for (const c of cases) {
      tried.push(`room event: ${c.name}`);
      const utd = utdOf(c.name);
      if (decryptedOf(c.name)) problems.push(`${c.name}: emitted as decrypted`);
      else if (!utd) problems.push(`${c.name}: no room.undecryptable`);
      else if (!c.codes.includes(utd.code)) problems.push(`${c.name}: code ${utd.code}, expected ${c.codes.join("|")} (${utd.message})`);
    }
    console.log(`# room-event corpus: ${cases.map((c) => `${c.name} → ${utdOf(c.name)?.code ?? "?"}`).join("; ")}`);
    assert.deepEqual(problems, []);
    assert.equal(r.ev.crashed, 0);
  });

  it("replayed Megolm message (same session and index, other event ID) is refused; a re-delivery of the same event is not", async () => {
    const original = { ...r.peer.megolmEvent("A1", ROOM_A, { msgtype: "m.text", body: "pay 10 EUR" }, r.fake.eventId()), unsigned: unsigned("replay original") };
    await r.deliver({ rooms: { join: { [ROOM_A]: joinedRoom([], [original]) } } });
    assert.equal(decryptedOf("replay original")?.content.body, "pay 10 EUR");
    const replay = { ...structuredClone(original), event_id: r.fake.eventId("replay"), unsigned: unsigned("replay copy") };
    const redelivery = { ...structuredClone(original), unsigned: unsigned("replay redelivery") };
    await r.deliver({ rooms: { join: { [ROOM_A]: joinedRoom([], [replay, redelivery]) } } });
    tried.push("room event: replayed Megolm message", "room event: identical re-delivery");
    assert.equal(utdOf("replay copy")?.code, "replay");
    assert.ok(!decryptedOf("replay copy"), "the replayed copy was emitted as decrypted");
    assert.equal(decryptedOf("replay redelivery")?.content.body, "pay 10 EUR", "a re-delivery of the same event (same ID and timestamp) must still decrypt");
  });

  it("hostile to-device messages: reason-coded failures, nothing accepted", async () => {
    const other = new OlmPeer(`@other:${FAKE_SERVER_NAME}`, "OTHERDEV");
    const stranger = new OlmPeer(`@stranger:${FAKE_SERVER_NAME}`, "STRANGER");
    const cases: { name: string; ev: Json; codes: string[] }[] = [
      { name: "Olm message for another recipient key", ev: r.peer.olmToDevice(r.me, "m.dummy", {}, { ciphertextKey: other.curve25519 }), codes: ["not_for_us"] },
      { name: "plaintext recipient is another user", ev: r.peer.olmToDevice(r.me, "m.dummy", {}, { plaintextOverrides: { recipient: other.userId } }), codes: ["sender_mismatch"] },
      { name: "plaintext recipient_keys is another key", ev: r.peer.olmToDevice(r.me, "m.dummy", {}, { plaintextOverrides: { recipient_keys: { ed25519: other.ed25519 } } }), codes: ["sender_mismatch"] },
      { name: "plaintext sender differs from the event sender", ev: r.peer.olmToDevice(r.me, "m.dummy", {}, { eventSender: other.userId }), codes: ["sender_mismatch"] },
      { name: "plaintext ed25519 differs from the known device", ev: r.peer.olmToDevice(r.me, "m.dummy", {}, { plaintextOverrides: { keys: { ed25519: other.ed25519 } } }), codes: ["sender_mismatch"] },
      { name: "plaintext is not JSON", ev: r.peer.olmToDevice(r.me, "m.dummy", {}, { rawPlaintext: "{not json" }), codes: ["malformed"] },
      { name: "plaintext lacks type", ev: r.peer.olmToDevice(r.me, "m.dummy", {}, { rawPlaintext: JSON.stringify({ content: {}, sender: PEER }) }), codes: ["malformed"] },
      {
        name: "garbage pre-key message",
        ev: { type: "m.room.encrypted", sender: stranger.userId, content: { algorithm: "m.olm.v1.curve25519-aes-sha2", sender_key: stranger.curve25519, ciphertext: { [r.me.curve25519]: { type: 0, body: "AwogAAAA" } } } },
        codes: ["olm_bad_prekey", "olm_decrypt", "malformed"],
      },
      {
        name: "normal message without a session",
        ev: { type: "m.room.encrypted", sender: stranger.userId, content: { algorithm: "m.olm.v1.curve25519-aes-sha2", sender_key: stranger.curve25519, ciphertext: { [r.me.curve25519]: { type: 1, body: "AwogAAAA" } } } },
        codes: ["olm_no_session"],
      },
      {
        name: "Olm message type 7",
        ev: { type: "m.room.encrypted", sender: PEER, content: { algorithm: "m.olm.v1.curve25519-aes-sha2", sender_key: r.peer.curve25519, ciphertext: { [r.me.curve25519]: { type: 7, body: "AAAA" } } } },
        codes: ["malformed"],
      },
      {
        name: "1 MB sender_key",
        ev: { type: "m.room.encrypted", sender: PEER, content: { algorithm: "m.olm.v1.curve25519-aes-sha2", sender_key: "K".repeat(ONE_MB), ciphertext: { [r.me.curve25519]: { type: 0, body: "AAAA" } } } },
        codes: ["malformed"],
      },
      {
        name: "1.1 MB Olm body",
        ev: { type: "m.room.encrypted", sender: PEER, content: { algorithm: "m.olm.v1.curve25519-aes-sha2", sender_key: r.peer.curve25519, ciphertext: { [r.me.curve25519]: { type: 0, body: "A".repeat(ONE_MB + 100_000) } } } },
        codes: ["malformed"],
      },
      { name: "unknown to-device algorithm", ev: { type: "m.room.encrypted", sender: PEER, content: { algorithm: "m.olm.v2", sender_key: r.peer.curve25519, ciphertext: {} } }, codes: ["unknown_algorithm"] },
      { name: "ciphertext missing", ev: { type: "m.room.encrypted", sender: PEER, content: { algorithm: "m.olm.v1.curve25519-aes-sha2", sender_key: r.peer.curve25519 } }, codes: ["malformed"] },
      { name: "to-device without content", ev: { type: "m.room.encrypted", sender: PEER }, codes: ["malformed"] },
      { name: "to-device without sender", ev: { type: "m.room.encrypted", content: {} }, codes: ["malformed"] },
    ];
    const failuresBefore = r.ev.toDeviceFailures.length;
    await r.deliver({ to_device: { events: cases.map((c) => c.ev) } }, 30_000);
    const got = r.ev.toDeviceFailures.slice(failuresBefore);
    const problems: string[] = [];
    // Failures come back in input order, one per hostile message.
    assert.equal(got.length, cases.length, `to-device failures: ${JSON.stringify(got.map((g) => g.code))}`);
    console.log(`# to-device corpus: ${cases.map((c, i) => `${c.name} → ${got[i]?.code ?? "?"}`).join("; ")}`);
    cases.forEach((c, i) => {
      tried.push(`to-device: ${c.name}`);
      if (!c.codes.includes(got[i]!.code)) problems.push(`${c.name}: code ${got[i]!.code}, expected ${c.codes.join("|")} (${got[i]!.message})`);
    });
    assert.deepEqual(problems, []);
    assert.ok(!r.ev.toDevice.some((t) => t.type === "m.dummy" && t.encrypted), "a forged m.dummy was accepted");

    // A 1 MB clear-text custom to-device event is passed on, not fatal.
    await r.deliver({ to_device: { events: [{ type: "org.example.big", sender: PEER, content: { blob: "x".repeat(ONE_MB) } }] } });
    tried.push("to-device: 1 MB clear-text custom event");
    assert.ok(r.ev.toDevice.some((t) => t.type === "org.example.big"));
    other.free();
    stranger.free();
    assert.equal(r.ev.crashed, 0);
  });

  it("room keys from untrusted places are not accepted: bad keys, unrequested forwarded keys, impostors", async () => {
    const keysBefore = r.ev.roomKeys.length;
    const own2 = new OlmPeer(ME, "OWN2");
    r.fake.publishDevice(ME, "OWN2", own2.deviceKeys());
    // Our own other device becomes known (device list change of our own user).
    await r.deliver({ device_lists: { changed: [ME], left: [] } });
    await waitFor(async () => (await r.client.getDevices(ME)).some((d) => d.deviceId === "OWN2"), "our second device to be known");
    // Verified, so that its forward is refused only for being unrequested.
    await (await r.client.getDevice(ME, "OWN2"))!.setVerified(true);
    own2.openSession(r.me, r.otks[1]!);

    const fwd = r.peer.newMegolm("F1");
    const fwd2 = new OlmPeer(`@x:${FAKE_SERVER_NAME}`, "X");
    const own2Session = fwd2.newMegolm("F2");
    const forwarded = (from: OlmPeer, sessionId: string, sessionKey: string, senderKey: string): Json =>
      from.olmToDevice(r.me, "m.forwarded_room_key", {
        algorithm: "m.megolm.v1.aes-sha2",
        room_id: ROOM_A,
        sender_key: senderKey,
        sender_claimed_ed25519_key: r.peer.ed25519,
        session_id: sessionId,
        session_key: sessionKey,
        forwarding_curve25519_key_chain: [],
      });
    const bad = r.peer.newMegolm("BAD");
    const cases: { name: string; ev: Json }[] = [
      { name: "m.room_key with a garbage session_key", ev: r.peer.olmToDevice(r.me, "m.room_key", { algorithm: "m.megolm.v1.aes-sha2", room_id: ROOM_A, session_id: bad.sessionId, session_key: "AAAAgarbage" }) },
      { name: "m.room_key whose session_id does not match its key", ev: r.peer.olmToDevice(r.me, "m.room_key", { ...r.peer.roomKeyContent("BAD", ROOM_A), session_id: "X".repeat(43) }) },
      { name: "m.room_key with an unknown algorithm", ev: r.peer.olmToDevice(r.me, "m.room_key", { ...r.peer.roomKeyContent("BAD", ROOM_A), algorithm: "m.megolm.v2.aes-sha2" }) },
      { name: "m.room_key with a 1 MB session_key", ev: r.peer.olmToDevice(r.me, "m.room_key", { ...r.peer.roomKeyContent("BAD", ROOM_A), session_key: "A".repeat(ONE_MB) }) },
      { name: "m.forwarded_room_key from another user, not requested", ev: forwarded(r.peer, fwd.sessionId, r.peer.exportedSessionKey("F1"), r.peer.curve25519) },
      { name: "m.forwarded_room_key from our own other device, not requested", ev: forwarded(own2, own2Session.sessionId, fwd2.exportedSessionKey("F2"), fwd2.curve25519) },
    ];
    await r.deliver({ to_device: { events: cases.map((c) => c.ev) } });
    for (const c of cases) tried.push(`room key: ${c.name}`);
    const accepted = r.ev.roomKeys.slice(keysBefore);
    assert.deepEqual(accepted, [], `untrusted room keys were accepted: ${JSON.stringify(accepted)}`);
    // Logged rejections.
    assert.ok(logs.grep(/not one of our known devices/).length >= 1, "no logged rejection of the forwarded key from another user");
    assert.ok(logs.grep(/did not request/).length >= 1, "no logged rejection of the unrequested forwarded key");
    assert.ok(logs.grep(/rejected room key|malformed m\.room_key|reason: malformed/).length >= 1, "no logged rejection of the bad room keys");
    // Events with those sessions stay undecryptable.
    const fEv = { ...r.peer.megolmEvent("F1", ROOM_A, { msgtype: "m.text", body: "forwarded session" }, r.fake.eventId()), unsigned: unsigned("forwarded session event") };
    const bEv = { ...r.peer.megolmEvent("BAD", ROOM_A, { msgtype: "m.text", body: "bad key session" }, r.fake.eventId()), unsigned: unsigned("bad key session event") };
    const f2Ev = { ...fwd2.megolmEvent("F2", ROOM_A, { msgtype: "m.text", body: "own forwarded session" }, r.fake.eventId()), unsigned: unsigned("own forwarded session event") };
    await r.deliver({ rooms: { join: { [ROOM_A]: joinedRoom([], [fEv, f2Ev, bEv]) } } });
    tried.push("room event: session from an unrequested forward", "room event: session from an unrequested forward by our own device", "room event: session from a rejected m.room_key");
    assert.equal(utdOf("forwarded session event")?.code, "missing_session");
    assert.equal(utdOf("own forwarded session event")?.code, "missing_session");
    assert.equal(utdOf("bad key session event")?.code, "missing_session");
    own2.free();
    fwd2.free();
  });

  it("m.room_key for a room we are not in is not accepted", async () => {
    const keysBefore = r.ev.roomKeys.length;
    r.peer.newMegolm("NJ");
    await r.deliver({ to_device: { events: [r.peer.olmToDevice(r.me, "m.room_key", r.peer.roomKeyContent("NJ", NOT_JOINED))] } });
    tried.push("room key: m.room_key for a room we are not in");
    const accepted = r.ev.roomKeys.slice(keysBefore);
    assert.deepEqual(accepted, [], `a room key for a room we are not in was accepted: ${JSON.stringify(accepted)}`);
  });

  it("device keys with bad signatures or mismatched IDs in /keys/query are rejected; a known device's keys cannot be replaced", async () => {
    const good = new OlmPeer(MALLORY, "GOOD");
    const forger = new OlmPeer(MALLORY, "FORGER");
    const badsig = new OlmPeer(MALLORY, "BADSIG");
    const mism = new OlmPeer(MALLORY, "OTHERID");
    const wrongUser = new OlmPeer(`@eve:${FAKE_SERVER_NAME}`, "WRONGUSER");
    const nokeys = new OlmPeer(MALLORY, "NOKEYS");
    const unsignedDev = new OlmPeer(MALLORY, "UNSIGNED");
    const badsigKeys = { ...badsig.deviceKeys(), signatures: forger.deviceKeys().signatures }; // signed by another key
    const tampered = good.deviceKeys();
    const tamperedKeys = { ...tampered, device_id: "TAMPERED", keys: { "curve25519:TAMPERED": badsig.curve25519, "ed25519:TAMPERED": good.ed25519 } };
    const unsignedKeys = { ...unsignedDev.deviceKeys() };
    delete unsignedKeys.signatures;
    const nokeysKeys = nokeys.sign({ user_id: MALLORY, device_id: "NOKEYS", algorithms: [], keys: { "ed25519:NOKEYS": nokeys.ed25519 } });
    r.fake.keysQueryOverride = (u) =>
      u === MALLORY
        ? {
            GOOD: good.deviceKeys(),
            BADSIG: badsigKeys,
            MISMATCH: mism.deviceKeys(), // payload says device_id OTHERID
            WRONGUSER: wrongUser.deviceKeys(), // payload says user @eve
            NOKEYS: nokeysKeys,
            UNSIGNED: unsignedKeys,
            TAMPERED: tamperedKeys, // keys changed after signing
            NOTANOBJECT: "device",
          }
        : undefined;
    // Mallory joins room A: she becomes tracked and queried.
    await r.deliver({ rooms: { join: { [ROOM_A]: joinedRoom([], [memberEvent(MALLORY, "join", r.fake.eventId("m"))]) } } });
    await waitFor(async () => (await r.client.getDevices(MALLORY)).some((d) => d.deviceId === "GOOD"), "Mallory's good device to be known");
    const ids = (await r.client.getDevices(MALLORY)).map((d) => d.deviceId).sort();
    for (const n of ["BADSIG", "MISMATCH", "WRONGUSER", "NOKEYS", "UNSIGNED", "TAMPERED", "NOTANOBJECT"]) tried.push(`keys/query: device ${n}`);
    assert.deepEqual(ids, ["GOOD"], "only the correctly self-signed device may be stored");
    assert.ok(logs.grep(/rejected device keys of .*BADSIG.*bad self-signature/).length >= 1, "BADSIG rejection not logged");
    assert.ok(logs.grep(/rejected device keys of .*MISMATCH.*do not match/).length >= 1, "MISMATCH rejection not logged");

    // A known device "changes" its identity keys: refused, the known keys stay.
    const impostor = new OlmPeer(PEER, "PEERDEV");
    const before = (await r.client.getDevices(PEER)).find((d) => d.deviceId === "PEERDEV")!;
    r.fake.publishDevice(PEER, "PEERDEV", impostor.deviceKeys());
    const queriesBefore = r.fake.callsTo(/keys\/query/).length;
    await r.deliver({ device_lists: { changed: [PEER], left: [] } });
    await waitFor(() => r.fake.callsTo(/keys\/query/).slice(queriesBefore).some((c) => c.body?.includes(PEER)), "a new keys/query for the peer");
    await waitFor(() => logs.grep(/changed its identity keys/).length > 0, "the refused key change to be logged");
    tried.push("keys/query: a known device's identity keys replaced");
    const afterDev = (await r.client.getDevices(PEER)).find((d) => d.deviceId === "PEERDEV")!;
    assert.equal(afterDev.ed25519, before.ed25519);
    assert.equal(afterDev.curve25519, before.curve25519);

    // The impostor (new keys, same user and device ID) shares a session and talks: its messages are
    // never attributed to the known device.
    impostor.openSession(r.me, r.otks[2]!);
    impostor.newMegolm("IMP");
    await r.deliver({ to_device: { events: [impostor.olmToDevice(r.me, "m.room_key", impostor.roomKeyContent("IMP", ROOM_A))] } });
    const impEv = { ...impostor.megolmEvent("IMP", ROOM_A, { msgtype: "m.text", body: "I am the peer, trust me" }, r.fake.eventId()), unsigned: unsigned("impostor") };
    await r.deliver({ rooms: { join: { [ROOM_A]: joinedRoom([], [impEv]) } } });
    tried.push("room event: impostor device with a known device's ID");
    const imp = decryptedOf("impostor");
    const impUtd = utdOf("impostor");
    assert.ok(imp || impUtd, "the impostor's event was neither emitted nor reported");
    console.log(`# impostor with a known device's ID: ${imp ? `decrypted, verification ${imp.encryption?.verification}, senderDeviceId ${imp.encryption?.senderDeviceId}` : `undecryptable (${impUtd?.code})`}`);
    if (imp) {
      assert.notEqual(imp.encryption?.verification, "verified");
      assert.notEqual(imp.encryption?.verification, "unverified", "the impostor's message was attributed to the known device");
      assert.equal(imp.encryption?.verification, "unknown_device");
    }
    for (const p of [good, forger, badsig, mism, wrongUser, nokeys, unsignedDev, impostor]) p.free();
    r.fake.keysQueryOverride = null;
  });

  it("device keys altered after signing by adding a `__proto__` member fail the signature check", async () => {
    const dev = new OlmPeer(`@proto:${FAKE_SERVER_NAME}`, "PROTO");
    const signed = dev.deviceKeys();
    // JSON text with an own "__proto__" member added after signing.
    const text = JSON.stringify(signed).replace(/^\{/, '{"__proto__":{"injected":"after signing"},');
    const altered = JSON.parse(text) as Json;
    assert.ok(Object.prototype.hasOwnProperty.call(altered, "__proto__"));
    r.fake.keysQueryOverride = (u) => (u === dev.userId ? { PROTO: altered } : undefined);
    await r.deliver({ rooms: { join: { [ROOM_A]: joinedRoom([], [memberEvent(dev.userId, "join", r.fake.eventId("m"))]) } } });
    await waitFor(() => r.fake.callsTo(/keys\/query/).some((c) => c.body?.includes(dev.userId)), "a keys/query for the user");
    await new Promise((res) => setTimeout(res, 300));
    tried.push("keys/query: `__proto__` member added after signing");
    const devices = await r.client.getDevices(dev.userId);
    r.fake.keysQueryOverride = null;
    dev.free();
    assert.equal(devices.length, 0, "device keys with content not covered by the signature were accepted");
  });

  it(
    "a deeply nested to-device event and timeline ciphertext (5,000 levels) fail with a reason, not a sync that can never be processed",
    async () => {
      const depth = 5000;
      const deep = '{"a":'.repeat(depth) + "1" + "}".repeat(depth);
      const good = { ...r.peer.megolmEvent("A1", ROOM_A, { msgtype: "m.text", body: "next to a deep event" }, r.fake.eventId()), unsigned: unsigned("next to deep") };
      const template = r.peer.megolmEvent("A1", ROOM_A, { msgtype: "m.text", body: "deep" }, r.fake.eventId());
      const deepTimeline = { ...template, content: { ...(template.content as Record<string, unknown>), ciphertext: "__DEEP__" }, unsigned: unsigned("deep ciphertext") };
      const idx = r.fake.batchCount;
      const text = JSON.stringify({
        next_batch: FakeHomeserver.tokenAfter(idx),
        to_device: { events: [{ type: "m.room.encrypted", sender: MALLORY, content: "__DEEP__" }] },
        rooms: { join: { [ROOM_A]: joinedRoom([], [deepTimeline, good]) } },
      }).replaceAll('"__DEEP__"', deep);
      r.fake.queueSync({ rawBody: text });
      tried.push(`to-device: content nested ${depth} levels`);
      const token = FakeHomeserver.tokenAfter(idx);
      const errorsBefore = r.ev.errors.length;
      try {
        await waitFor(() => r.ev.syncs.includes(token), "the batch with the deep event to be processed", 6000);
      } finally {
        if (!r.ev.syncs.includes(token)) {
          // Unstick the client for the following tests: the server skips the poisoned batch.
          const errs = r.ev.errors.slice(errorsBefore).map((e) => `${e.name}: ${e.message}`);
          r.fake.skipFailedBatches = true;
          await waitFor(() => r.ev.syncs.includes(token), "the client to get past the skipped batch");
          r.fake.skipFailedBatches = false;
          r.fake.served.delete(idx);
          // eslint-disable-next-line no-unsafe-finally
          throw new Error(`the batch was never processed (${errs.length} sync errors, e.g. ${errs[0] ?? "none"})`);
        }
      }
      assert.equal(decryptedOf("next to deep")?.content.body, "next to a deep event");
      assert.equal(utdOf("deep ciphertext")?.code, "malformed");
    },
  );

  it("after all that the client still syncs and decrypts a good message; the worker never crashed", async () => {
    const good = { ...r.peer.megolmEvent("A1", ROOM_A, { msgtype: "m.text", body: "final good message" }, r.fake.eventId()), unsigned: unsigned("final") };
    await r.deliver({ rooms: { join: { [ROOM_A]: joinedRoom([], [good]) } } });
    const ev = decryptedOf("final");
    assert.equal(ev?.content.body, "final good message");
    assert.equal(ev?.encryption?.verification, "unverified");
    assert.equal(r.ev.crashed, 0, "the crypto worker crashed");
    // Every batch was processed the first time it was served (no poison pill).
    const reserved = [...r.fake.served.entries()].filter(([, n]) => n > 1);
    assert.deepEqual(reserved, [], "some sync batches had to be served more than once");
    console.log(`# hostile corpus: ${tried.length} inputs tried, worker crashes ${r.ev.crashed}, sync batches ${r.fake.batchCount}`);
  });
});

// ---------------------------------------------------------------------------------------------
// Property-based: arbitrary and mutated /sync responses.

describe("property: arbitrary /sync responses never crash the client or the worker", { timeout: 240_000 }, () => {
  const logs = new LogCapture();
  let r: Rig;
  let template: Json;
  const stats = { runs: 0, wellFormed: 0, rejected: 0, poison: [] as string[] };

  before(async () => {
    r = await makeRig(logs);
    r.fake.skipFailedBatches = true;
    await r.deliver({ rooms: { join: { [ROOM_A]: joinedRoom(encryptedRoomState(ROOM_A, PEER, [ME, PEER])) } } });
    await waitFor(async () => (await r.client.getDevices(PEER)).some((d) => d.deviceId === "PEERDEV"), "the peer's device");
    r.peer.newMegolm("T");
    const key = r.peer.olmToDevice(r.me, "m.room_key", r.peer.roomKeyContent("T", ROOM_A));
    template = {
      next_batch: "x",
      to_device: { events: [key, { type: "org.example.plain", sender: PEER, content: { a: 1 } }] },
      device_lists: { changed: [PEER], left: [] },
      device_one_time_keys_count: { signed_curve25519: 50 },
      device_unused_fallback_key_types: ["signed_curve25519"],
      rooms: {
        join: {
          [ROOM_A]: {
            state: { events: [memberEvent(PEER, "join", "$st1")] },
            timeline: {
              events: [
                r.peer.megolmEvent("T", ROOM_A, { msgtype: "m.text", body: "template" }, "$tmpl1"),
                { type: "m.room.message", event_id: "$plain1", sender: PEER, origin_server_ts: 1, content: { msgtype: "m.text", body: "clear" } },
                memberEvent(PEER, "join", "$m1"),
              ],
              limited: false,
            },
          },
        },
        invite: { [`!inv:${FAKE_SERVER_NAME}`]: { invite_state: { events: [memberEvent(ME, "invite", "$inv")] } } },
        leave: {},
      },
    };
  });

  after(async () => {
    await r?.client.close();
    await r?.fake.close();
    r?.peer.free();
    console.log(
      `# property: ${stats.runs} /sync responses tried (${stats.wellFormed} with a next_batch, ${stats.rejected} rejected as malformed), poison pills ${stats.poison.length}, worker crashes ${r?.ev.crashed ?? "?"}`,
    );
  });

  /** Serve one response; wait until the client moved past it; check the invariants. */
  async function feed(value: unknown): Promise<void> {
    stats.runs++;
    const idx = r.fake.batchCount;
    const wellFormed = isObj(value) && typeof value.next_batch === "string";
    const body = wellFormed ? { ...(value as Json), next_batch: FakeHomeserver.tokenAfter(idx) } : value;
    if (wellFormed) stats.wellFormed++;
    const errorsBefore = r.ev.errors.length;
    r.fake.queueSync({ rawBody: JSON.stringify(body) ?? "null" });
    const token = FakeHomeserver.tokenAfter(idx);
    await waitFor(() => r.ev.syncs.includes(token), `the client to move past response ${idx}`, 15_000);
    if (!wellFormed) stats.rejected++;
    else if (r.fake.rerequested.has(idx)) {
      const errs = r.ev.errors.slice(errorsBefore).map((e) => `${e.name}: ${e.message}`);
      stats.poison.push(`${JSON.stringify(body).slice(0, 300)} → ${errs.join("; ")}`);
      throw new Error(`a well-formed /sync response could not be processed (a real server would re-serve it forever): ${errs.join("; ")}`);
    }
    if (r.ev.crashed !== 0) throw new Error("the crypto worker crashed");
  }

  const userId = fc.oneof(fc.constantFrom(ME, PEER, MALLORY, "", "@", "__proto__", "constructor"), fc.string());
  const roomId = fc.oneof(fc.constantFrom(ROOM_A, ROOM_B, "__proto__", "constructor", "", "!x:y"), fc.string());
  const b64 = fc.oneof(fc.base64String(), fc.string(), fc.constant("AAAA"));
  const megolmContent = fc.record(
    {
      algorithm: fc.oneof(fc.constantFrom("m.megolm.v1.aes-sha2", "m.olm.v1.curve25519-aes-sha2"), fc.string(), fc.jsonValue()),
      ciphertext: fc.oneof(b64, fc.jsonValue()),
      session_id: fc.oneof(fc.string(), fc.jsonValue()),
      sender_key: fc.oneof(fc.string(), fc.jsonValue()),
      device_id: fc.oneof(fc.string(), fc.jsonValue()),
    },
    { requiredKeys: [] },
  );
  const event = fc.oneof(
    fc.jsonValue(),
    fc.record(
      {
        type: fc.oneof(fc.constantFrom("m.room.encrypted", "m.room.member", "m.room.encryption", "m.room.message", "m.room.history_visibility"), fc.string()),
        event_id: fc.oneof(fc.string(), fc.jsonValue()),
        sender: fc.oneof(userId, fc.jsonValue()),
        state_key: fc.oneof(userId, fc.jsonValue()),
        origin_server_ts: fc.oneof(fc.integer(), fc.double(), fc.jsonValue()),
        content: fc.oneof(megolmContent, fc.jsonValue(), fc.record({ membership: fc.oneof(fc.constantFrom("join", "leave", "invite", "ban"), fc.jsonValue()), algorithm: fc.oneof(fc.constant("m.megolm.v1.aes-sha2"), fc.jsonValue()), rotation_period_msgs: fc.jsonValue() }, { requiredKeys: [] })),
        unsigned: fc.jsonValue(),
      },
      { requiredKeys: [] },
    ),
  );
  const toDevice = fc.oneof(
    fc.jsonValue(),
    fc.record(
      {
        type: fc.oneof(fc.constantFrom("m.room.encrypted", "m.room_key", "m.room_key.withheld", "m.room_key_request", "m.forwarded_room_key", "m.dummy"), fc.string()),
        sender: fc.oneof(userId, fc.jsonValue()),
        content: fc.oneof(
          fc.jsonValue(),
          fc.record(
            {
              algorithm: fc.oneof(fc.constantFrom("m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"), fc.jsonValue()),
              sender_key: fc.oneof(fc.string(), fc.jsonValue()),
              ciphertext: fc.oneof(fc.jsonValue(), fc.dictionary(fc.oneof(fc.string(), fc.constant("__me__")), fc.record({ type: fc.oneof(fc.constantFrom(0, 1), fc.jsonValue()), body: fc.oneof(b64, fc.jsonValue()) }, { requiredKeys: [] }))),
              room_id: fc.oneof(roomId, fc.jsonValue()),
              session_id: fc.oneof(fc.string(), fc.jsonValue()),
              code: fc.oneof(fc.string(), fc.jsonValue()),
              action: fc.oneof(fc.constantFrom("request", "request_cancellation"), fc.jsonValue()),
              requesting_device_id: fc.oneof(fc.string(), fc.jsonValue()),
              request_id: fc.oneof(fc.string(), fc.jsonValue()),
              body: fc.jsonValue(),
            },
            { requiredKeys: [] },
          ),
        ),
      },
      { requiredKeys: [] },
    ),
  );
  const roomSection = fc.oneof(
    fc.jsonValue(),
    fc.record({ state: fc.oneof(fc.jsonValue(), fc.record({ events: fc.oneof(fc.array(event, { maxLength: 5 }), fc.jsonValue()) })), timeline: fc.oneof(fc.jsonValue(), fc.record({ events: fc.oneof(fc.array(event, { maxLength: 6 }), fc.jsonValue()), limited: fc.jsonValue() })), invite_state: fc.jsonValue() }, { requiredKeys: [] }),
  );
  const structuredSync = fc.record(
    {
      next_batch: fc.oneof(fc.constant("x"), fc.constant("x"), fc.jsonValue()),
      rooms: fc.oneof(fc.jsonValue(), fc.record({ join: fc.dictionary(roomId, roomSection, { maxKeys: 3 }), invite: fc.dictionary(roomId, roomSection, { maxKeys: 2 }), leave: fc.dictionary(roomId, roomSection, { maxKeys: 2 }) }, { requiredKeys: [] })),
      to_device: fc.oneof(fc.jsonValue(), fc.record({ events: fc.oneof(fc.array(toDevice, { maxLength: 5 }), fc.jsonValue()) })),
      device_lists: fc.oneof(fc.jsonValue(), fc.record({ changed: fc.oneof(fc.array(userId, { maxLength: 4 }), fc.jsonValue()), left: fc.oneof(fc.array(userId, { maxLength: 4 }), fc.jsonValue()) }, { requiredKeys: [] })),
      device_one_time_keys_count: fc.oneof(fc.jsonValue(), fc.record({ signed_curve25519: fc.oneof(fc.integer({ min: -5, max: 200 }), fc.double(), fc.jsonValue()) })),
      device_unused_fallback_key_types: fc.jsonValue(),
      "org.matrix.msc2732.device_unused_fallback_key_types": fc.jsonValue(),
    },
    { requiredKeys: [] },
  );

  /** Paths of every node of a JSON value. */
  function paths(v: unknown, prefix: (string | number)[] = [], out: (string | number)[][] = []): (string | number)[][] {
    out.push(prefix);
    if (Array.isArray(v)) v.forEach((x, i) => paths(x, [...prefix, i], out));
    else if (isObj(v)) for (const [k, x] of Object.entries(v)) paths(x, [...prefix, k], out);
    return out;
  }
  type Mutation = { at: number; op: "delete" | "replace" | "huge" | "dup" | "wrongType"; value: unknown };
  function mutate(base: Json, muts: Mutation[]): unknown {
    let root: unknown = structuredClone(base);
    for (const m of muts) {
      const all = paths(root);
      const path = all[m.at % all.length]!;
      if (path.length === 0) {
        root = m.op === "replace" ? m.value : root;
        continue;
      }
      let parent: unknown = root;
      for (const k of path.slice(0, -1)) parent = (parent as Record<string | number, unknown>)[k];
      const key = path[path.length - 1]!;
      const p = parent as Record<string | number, unknown>;
      switch (m.op) {
        case "delete":
          if (Array.isArray(p)) p.splice(key as number, 1);
          else delete p[key];
          break;
        case "replace":
          p[key] = m.value;
          break;
        case "huge":
          p[key] = "\u00e9".repeat(300_000);
          break;
        case "dup":
          if (Array.isArray(p)) p.push(structuredClone(p[key as number]));
          else p[`${String(key)}_dup`] = structuredClone(p[key]);
          break;
        case "wrongType":
          p[key] = Array.isArray(p[key]) ? {} : isObj(p[key]) ? [] : typeof p[key] === "string" ? 12345 : "str";
          break;
      }
    }
    return root;
  }
  const mutation: fc.Arbitrary<Mutation> = fc.record({ at: fc.nat(), op: fc.constantFrom("delete", "replace", "huge", "dup", "wrongType"), value: fc.jsonValue() }) as fc.Arbitrary<Mutation>;

  it("arbitrary JSON values as /sync responses (20 runs)", async () => {
    await fc.assert(fc.asyncProperty(fc.jsonValue(), feed), { numRuns: 20, endOnFailure: true });
  });

  it("structured hostile /sync responses (100 runs)", async () => {
    await fc.assert(fc.asyncProperty(structuredSync, feed), { numRuns: 100, endOnFailure: true });
  });

  it("mutations of a valid /sync response (80 runs)", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(mutation, { minLength: 1, maxLength: 4 }), async (muts) => feed(mutate(template, muts))),
      { numRuns: 80, endOnFailure: true },
    );
  });

  it("the client still syncs and decrypts a good message, and the worker never crashed", async () => {
    r.fake.skipFailedBatches = false;
    // The fuzzed one-time-key counts made the client generate (and libolm evict) many one-time keys:
    // open a fresh Olm session with a key from the latest upload.
    const latest = [...r.fake.uploads].reverse().find((u) => u.status === 200 && isObj(u.body.one_time_keys))!;
    const otk = Object.values(latest.body.one_time_keys as Record<string, { key: string }>).pop()!.key;
    r.peer.openSession(r.me, otk, true);
    r.peer.newMegolm("END");
    await r.deliver({ to_device: { events: [r.peer.olmToDevice(r.me, "m.room_key", r.peer.roomKeyContent("END", ROOM_A))] } });
    const good = { ...r.peer.megolmEvent("END", ROOM_A, { msgtype: "m.text", body: "still alive" }, r.fake.eventId()), unsigned: { fault_case: "after fuzz" } };
    await r.deliver({ rooms: { join: { [ROOM_A]: joinedRoom([], [good]) } } });
    const diag = JSON.stringify({ keys: r.ev.roomKeys.slice(-3), tdf: r.ev.toDeviceFailures.slice(-3), utd: r.ev.utds.slice(-2).map((u) => [u.code, u.message]) });
    assert.equal(r.ev.events.find((e) => e.unsigned?.fault_case === "after fuzz")?.content.body, "still alive", diag);
    assert.equal(r.ev.crashed, 0);
  });
});
