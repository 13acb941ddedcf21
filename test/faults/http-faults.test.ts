/**
 * HTTP faults between the client and its homeserver.
 *
 * On a scripted fake homeserver (undici MockAgent, no real network): /sync timeouts, connection
 * resets, 500/502/503, 429 with retry_after_ms, malformed JSON — the sync loop reports each as an
 * `error`, backs off and recovers; keys/upload is retried with an identical body, and one-time
 * keys are only marked published once an upload succeeded (a failed upload's keys are re-sent,
 * not replaced); to-device and room-event PUTs keep their transaction ID across retries.
 *
 * On a real Synapse: the server restarts (2 s down) while two clients sync; they recover and still
 * exchange encrypted messages.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { MatrixHttpError, MatrixSdkError, NetworkError, type MatrixClient } from "../../src/index.js";
import type { SynapseHandle } from "../harness/synapse.js";
import { PASSWORD, Recorder, startClient, synapse, uniqueName } from "../integration/helpers.js";
import { FakeHomeserver, FAKE_SERVER_NAME, encryptedRoomState, isObj, joinedRoom, type Fault } from "./fakeServer.js";
import { ClientEvents, LogCapture, fakeClient, sleep, tempDir, waitFor } from "./helpers.js";
import { OlmPeer, PeerInbox, initOlm } from "../support/olmPeer.js";

type Json = Record<string, unknown>;
const ME = `@me:${FAKE_SERVER_NAME}`;
const PEER = `@peer:${FAKE_SERVER_NAME}`;

const otkIds = (body: Json): string[] => Object.keys(isObj(body.one_time_keys) ? body.one_time_keys : {}).sort();
const describeErr = (e: Error): string => (e instanceof MatrixHttpError ? `http ${e.status}${e.errcode ? ` ${e.errcode}` : ""}` : e instanceof NetworkError ? `network (${/timed out/.test(e.message) ? "timeout" : "reset"})` : MatrixSdkError.isSdkError(e) ? e.code : e.name);

describe("HTTP faults on a scripted fake homeserver", { timeout: 120_000 }, () => {
  const logs = new LogCapture();
  const cleanup: (() => Promise<void>)[] = [];
  let injected = 0;

  before(async () => {
    await initOlm();
  });
  after(async () => {
    for (const c of cleanup.reverse()) await c().catch(() => undefined);
    console.log(`# HTTP faults injected on the fake homeserver: ${injected}`);
  });

  async function rig(opts: Parameters<typeof fakeClient>[2] = {}, beforeLogin: (fake: FakeHomeserver) => void = () => undefined) {
    const fake = new FakeHomeserver(ME);
    beforeLogin(fake);
    const client = fakeClient(fake, logs, opts);
    const ev = new ClientEvents(client);
    cleanup.push(async () => {
      await client.close();
      await fake.close();
    });
    return { fake, client, ev };
  }

  it("the sync loop survives a timeout, resets, 500/502/503, 429 with retry_after_ms and malformed JSON, then processes a good sync", async () => {
    // syncTimeoutMs is the long-poll timeout; the client gives each /sync attempt that + 30 s. A
    // negative value brings the attempt timeout down to 1 s so that a hung request is cut quickly.
    const { fake, client, ev } = await rig({ syncTimeoutMs: -29_000, syncBackoff: { baseMs: 50, maxMs: 400 } });
    await client.login(ME, "pw");
    client.start();
    const ROOM = `!plain:${FAKE_SERVER_NAME}`;
    const t0 = FakeHomeserver.tokenAfter(fake.queueSync({ rooms: { join: { [ROOM]: joinedRoom([{ type: "m.room.create", state_key: "", sender: ME, event_id: "$c", origin_server_ts: 1, content: {} }]) } } }));
    await waitFor(() => ev.syncs.includes(t0), "the first sync");
    const faults: Fault[] = [
      { kind: "hang" },
      { kind: "reset" },
      { kind: "status", status: 500 },
      { kind: "status", status: 502, body: "<html><body>502 Bad Gateway</body></html>" },
      { kind: "status", status: 503 },
      { kind: "status", status: 429, body: { errcode: "M_LIMIT_EXCEEDED", error: "slow down", retry_after_ms: 700 } },
      { kind: "raw", status: 200, raw: '{"next_batch": "t9", "rooms": {' },
      { kind: "raw", status: 200, raw: "" },
      { kind: "raw", status: 200, raw: "[1,2,3]" },
      { kind: "raw", status: 200, raw: '{"rooms": {}}' },
    ];
    injected += faults.length;
    const errorsBefore = ev.errors.length;
    const syncsBefore = ev.syncs.length;
    fake.fail(/\/sync/, ...faults);
    await waitFor(() => fake.pendingFaults() === 0, "every fault to be consumed", 30_000);
    // Then a good batch.
    const good = { type: "m.room.message", event_id: "$good", sender: PEER, origin_server_ts: 2, content: { msgtype: "m.text", body: "after the storm" } };
    const t1 = FakeHomeserver.tokenAfter(fake.queueSync({ rooms: { join: { [ROOM]: joinedRoom([], [good]) } } }));
    await waitFor(() => ev.events.some((e) => e.eventId === "$good"), "the good sync after the faults", 30_000);
    // Its token is committed (and `sync` emitted) only after its events were emitted.
    await waitFor(() => ev.syncs.includes(t1), "the good sync's token to be committed");
    const errs = ev.errors.slice(errorsBefore).map(describeErr);
    const syncCalls = fake.callsTo(/\/sync/);
    const i429 = syncCalls.findIndex((c) => c.outcome === "status:429");
    assert.ok(i429 >= 0 && i429 + 1 < syncCalls.length, `sync calls: ${syncCalls.map((c) => c.outcome).join(",")}; errors ${errs.join(",")}`);
    const waited429 = syncCalls[i429 + 1]!.at - syncCalls[i429]!.at;
    console.log(`# sync faults → errors: ${errs.join(", ")}; waited ${waited429} ms after the 429 (retry_after_ms 700)`);
    assert.equal(fake.pendingFaults(), 0);
    assert.equal(errs.length, faults.length, "one `error` per failed sync");
    assert.deepEqual(errs, [
      "network (timeout)",
      "network (reset)",
      "http 500 M_UNKNOWN",
      "http 502",
      "http 503 M_UNKNOWN",
      "http 429 M_LIMIT_EXCEEDED",
      "http 200 M_NOT_JSON",
      "http 200 M_NOT_JSON",
      "http 200 M_BAD_JSON",
      "http 200 M_BAD_JSON",
    ]);
    assert.ok(waited429 >= 650, `the client retried ${waited429} ms after a 429 asking for 700 ms`);
    // No token was committed while failing; the good batch was committed once.
    assert.deepEqual(ev.syncs.slice(syncsBefore).filter((t) => t !== t0), [t1]);
    assert.equal(ev.crashed, 0);
  });

  it("keys/upload is retried with an identical body (503, 502, reset, then 200)", async () => {
    const { fake, client } = await rig({}, (f) => f.fail(/\/keys\/upload/, { kind: "status", status: 503 }, { kind: "status", status: 502 }, { kind: "reset" }));
    injected += 3;
    await client.login(ME, "pw");
    const attempts = fake.callsTo(/\/keys\/upload/);
    assert.deepEqual(attempts.map((c) => c.outcome), ["status:503", "status:502", "reset", "ok"]);
    const bodies = attempts.filter((c) => c.body !== undefined).map((c) => c.body);
    assert.equal(bodies.length, 3);
    assert.ok(bodies.every((b) => b === bodies[0]), "a retry changed the body");
    assert.equal(otkIds(JSON.parse(bodies[0]!) as Json).length, 50);
  });

  it("one-time keys are marked published only after a successful upload: a failed upload's keys are sent again, not replaced", async () => {
    const { fake, client, ev } = await rig();
    await client.login(ME, "pw");
    client.start();
    const firstKeys = otkIds(fake.uploads.find((u) => u.status === 200)!.body);
    // The server says only 10 keys are left: the client generates 40 more and uploads them. That
    // upload fails on every attempt (1 + 5 retries).
    fake.fail(/\/keys\/upload/, ...Array.from({ length: 6 }, () => ({ kind: "status", status: 500 }) as Fault));
    injected += 6;
    const errorsBefore = ev.errors.length;
    const t1 = FakeHomeserver.tokenAfter(fake.queueSync({ device_one_time_keys_count: { signed_curve25519: 10 } }));
    await waitFor(() => ev.syncs.includes(t1), "the sync");
    await waitFor(() => fake.pendingFaults() === 0 && ev.errors.length > errorsBefore, "the upload to fail for good", 40_000);
    const failed = fake.uploads.filter((u) => u.status === 500);
    assert.equal(failed.length, 6);
    const failedKeys = otkIds(failed[0]!.body);
    assert.equal(failedKeys.length, 40);
    assert.ok(failed.every((u) => JSON.stringify(u.body) === JSON.stringify(failed[0]!.body)), "retries changed the body");
    assert.ok(failedKeys.every((k) => !firstKeys.includes(k)), "the new upload re-sent already published keys");
    const uploadError = ev.errors.slice(errorsBefore).find((e) => e instanceof MatrixHttpError && e.status === 500);
    assert.ok(uploadError, "the definitive upload failure was not reported as an `error`");

    // The next syncs trigger the upload again (the server still counts 10): the same unpublished
    // keys must go out again.
    const lastFailed = fake.uploads.lastIndexOf(failed[failed.length - 1]!);
    await waitFor(() => fake.uploads.some((u, i) => i > lastFailed && u.status === 200), "a successful upload after the failures");
    const success = fake.uploads.find((u, i) => i > lastFailed && u.status === 200)!;
    const sentAgain = otkIds(success.body);
    const uploadErrors = ev.errors.slice(errorsBefore).filter((e) => e instanceof MatrixHttpError && e.status === 500).length;
    console.log(
      `# keys/upload: ${failed.length} failed attempts with ${failedKeys.length} keys; the next successful upload carried ${sentAgain.length} keys, ` +
        `${failedKeys.filter((k) => sentAgain.includes(k)).length} of them from the failed attempts; the one definitive failure was emitted as ${uploadErrors} \`error\` events`,
    );
    assert.deepEqual(sentAgain, failedKeys, "the keys of the failed upload were not re-sent as they were");
    uploadFailureReports.count = uploadErrors;
    // And once the server has them, they are not uploaded again.
    const t3 = FakeHomeserver.tokenAfter(fake.queueSync({ device_one_time_keys_count: { signed_curve25519: 50 } }));
    await waitFor(() => ev.syncs.includes(t3), "a later sync");
    await sleep(300);
    const all = fake.uploads.filter((u) => u.status === 200).flatMap((u) => otkIds(u.body));
    assert.equal(new Set(all).size, all.length, "a one-time key was uploaded twice successfully");
  });

  const uploadFailureReports = { count: -1 };
  it(
    "one definitive keys/upload failure is reported as one `error`, not once per sync while it was retried",
    () => {
      assert.notEqual(uploadFailureReports.count, -1, "the previous test did not run");
      assert.equal(uploadFailureReports.count, 1, `the failure was emitted ${uploadFailureReports.count} times`);
    },
  );

  it("when the first keys/upload fails beyond retries at login, the same keys are uploaded later", async () => {
    const { fake, client, ev } = await rig({}, (f) => f.fail(/\/keys\/upload/, ...Array.from({ length: 6 }, () => ({ kind: "status", status: 503 }) as Fault)));
    injected += 6;
    let loginError: unknown = null;
    await client.login(ME, "pw").catch((e: unknown) => (loginError = e));
    const failedKeys = otkIds(fake.uploads[0]!.body);
    console.log(`# login with keys/upload down: ${loginError ? `rejected (${describeErr(loginError as Error)}) although the session is set up` : "resolved"}; userId=${client.userId}`);
    client.start();
    const t = FakeHomeserver.tokenAfter(fake.queueSync({}));
    await waitFor(() => ev.syncs.includes(t), "a sync after login");
    await waitFor(() => fake.uploads.some((u) => u.status === 200), "a successful upload");
    const ok = fake.uploads.find((u) => u.status === 200)!;
    assert.ok(isObj(ok.body.device_keys), "device keys were not re-sent");
    assert.deepEqual(otkIds(ok.body), failedKeys, "the keys of the failed upload were replaced");
    loginOutcome.error = loginError;
    loginOutcome.userIdAfter = client.userId;
  });

  const loginOutcome: { error: unknown; userIdAfter: string | null | undefined } = { error: undefined, userIdAfter: undefined };
  it(
    "login() is atomic when keys/upload is down: it either resolves, or rejects and leaves the client logged out",
    () => {
      assert.notEqual(loginOutcome.userIdAfter, undefined, "the previous test did not run");
      assert.ok(loginOutcome.error === null || loginOutcome.userIdAfter === null, `login rejected (${String(loginOutcome.error)}) but userId is ${String(loginOutcome.userIdAfter)}`);
    },
  );

  it("to-device and room-event PUTs keep their transaction ID across retries; what leaves is encrypted and decryptable", async () => {
    const peer = new OlmPeer(PEER, "PEERDEV");
    cleanup.push(async () => peer.free());
    const ROOM = `!enc:${FAKE_SERVER_NAME}`;
    const { fake, client, ev } = await rig({}, (f) => {
      f.publishDevice(PEER, "PEERDEV", peer.deviceKeys());
      f.publishOtks(PEER, "PEERDEV", peer.signedOtks(3));
      f.setMember(ROOM, ME);
      f.setMember(ROOM, PEER);
    });
    await client.login(ME, "pw");
    client.start();
    const t = FakeHomeserver.tokenAfter(fake.queueSync({ rooms: { join: { [ROOM]: joinedRoom(encryptedRoomState(ROOM, PEER, [ME, PEER])) } } }));
    await waitFor(() => ev.syncs.includes(t), "the room");
    fake.fail(/\/sendToDevice\/m\.room\.encrypted\//, { kind: "status", status: 503 }, { kind: "reset" }, { kind: "status", status: 500 });
    fake.fail(/\/rooms\/[^/]+\/send\/m\.room\.encrypted\//, { kind: "status", status: 502 }, { kind: "reset" }, { kind: "status", status: 429, body: { errcode: "M_LIMIT_EXCEEDED", retry_after_ms: 100 } });
    injected += 6;
    const eventId = await client.getRoom(ROOM).sendText("secret over a flaky network");
    const toDevicePaths = fake.callsTo(/\/sendToDevice\/m\.room\.encrypted\//).map((c) => c.path);
    const sendPaths = fake.callsTo(/\/rooms\/[^/]+\/send\//).map((c) => c.path);
    console.log(`# PUT retries: to-device ${toDevicePaths.length} attempts on ${new Set(toDevicePaths).size} path(s), room send ${sendPaths.length} attempts on ${new Set(sendPaths).size} path(s)`);
    assert.equal(toDevicePaths.length, 4);
    assert.equal(new Set(toDevicePaths).size, 1, `to-device retries used other transaction IDs: ${toDevicePaths.join(" ")}`);
    assert.equal(sendPaths.length, 4);
    assert.equal(new Set(sendPaths).size, 1, `room send retries used other transaction IDs: ${sendPaths.join(" ")}`);
    assert.equal(eventId, `$sent_${decodeURIComponent(sendPaths[0]!.split("/").pop()!)}`);
    // Nothing in plaintext: every send was m.room.encrypted, and the peer can decrypt it.
    assert.ok(fake.roomSends.every((s) => s.eventType === "m.room.encrypted"));
    const inbox = new PeerInbox(peer);
    const td = fake.toDevice.filter((m) => m.eventType === "m.room.encrypted").pop()!;
    const msgs = td.body.messages as Record<string, Record<string, Json>>;
    const roomKey = inbox.olm(msgs[PEER]!.PEERDEV!);
    assert.equal(roomKey.type, "m.room_key");
    const payload = inbox.megolm(fake.roomSends[fake.roomSends.length - 1]!.body);
    assert.equal((payload.content as Json).body, "secret over a flaky network");
    assert.equal(payload.room_id, ROOM);
  });
});

describe("homeserver restart while two clients sync (real Synapse)", { timeout: 180_000 }, () => {
  let hs: SynapseHandle;
  let alice: { client: MatrixClient; rec: Recorder };
  let bob: { client: MatrixClient; rec: Recorder };
  let aliceEv: ClientEvents;
  let bobEv: ClientEvents;

  before(async () => {
    hs = await synapse();
  });
  after(async () => {
    await Promise.all([alice?.client.close(), bob?.client.close()]);
  });

  it("after a 2 s outage (and a restart) they still exchange encrypted messages; a send issued during the outage arrives", async () => {
    const a = await hs.registerUser(uniqueName("rsalice"), PASSWORD);
    const b = await hs.registerUser(uniqueName("rsbob"), PASSWORD);
    alice = await startClient(hs, a.userId, tempDir("sdk-rs-alice-"));
    bob = await startClient(hs, b.userId, tempDir("sdk-rs-bob-"));
    aliceEv = new ClientEvents(alice.client);
    bobEv = new ClientEvents(bob.client);
    const room = await alice.client.createRoom({ encrypted: true, invite: [b.userId] });
    await bob.rec.waitFor(() => bob.client.getRooms().some((r) => r.roomId === room.roomId), "Bob's invite");
    await bob.client.joinRoom(room.roomId);
    await alice.rec.waitFor(() => alice.rec.events.some((e) => e.type === "m.room.member" && e.stateKey === b.userId && e.content.membership === "join"), "Alice seeing Bob join");
    await room.sendText("before the restart");
    await bob.rec.waitFor(() => bob.rec.bodies(room.roomId).includes("before the restart"), "Bob decrypting before the restart");

    const started = Date.now();
    const restart = hs.restart({ downtimeMs: 2000 });
    await sleep(300);
    // A send issued while the server is down: the HTTP layer retries; the application retries
    // once more on a definitive network error.
    const during = (async () => {
      for (let i = 0; ; i++) {
        try {
          return await room.sendText("sent during the outage");
        } catch (e) {
          if (!(e instanceof NetworkError) || i >= 3) throw e;
        }
      }
    })();
    await restart;
    const downFor = Date.now() - started;
    await during;
    await bob.rec.waitFor(() => bob.rec.bodies(room.roomId).includes("sent during the outage"), "Bob decrypting the message sent during the outage", 60_000);
    await bob.client.getRoom(room.roomId).sendText("bob after the restart");
    await room.sendText("alice after the restart");
    await alice.rec.waitFor(() => alice.rec.bodies(room.roomId).includes("bob after the restart"), "Alice decrypting after the restart", 60_000);
    await bob.rec.waitFor(() => bob.rec.bodies(room.roomId).includes("alice after the restart"), "Bob decrypting after the restart", 60_000);
    const errs = (ev: ClientEvents): string => {
      const c: Record<string, number> = {};
      for (const e of ev.errors) c[describeErr(e)] = (c[describeErr(e)] ?? 0) + 1;
      return JSON.stringify(c);
    };
    console.log(`# Synapse restart: unavailable ~${(downFor / 1000).toFixed(1)} s; errors emitted: Alice ${errs(aliceEv)}, Bob ${errs(bobEv)}; worker crashes ${aliceEv.crashed + bobEv.crashed}`);
    assert.ok(aliceEv.errors.length + bobEv.errors.length >= 1, "nobody noticed the outage");
    assert.equal(aliceEv.crashed + bobEv.crashed, 0);
    const dup = bob.rec.bodies(room.roomId).filter((x) => x === "sent during the outage").length;
    assert.equal(dup, 1, "the message sent during the outage arrived more than once");
  });
});
