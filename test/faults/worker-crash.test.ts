/**
 * Crypto worker crashes while encrypted messages flow (real Synapse): the receiver's worker is
 * killed again and again (on a timer, and from inside event listeners, i.e. in the middle of
 * processing a sync), the sender's worker is killed in the middle of sends. Pending calls must
 * reject with typed errors, the worker must restart, the sync must resume from the last committed
 * token, nothing may be lost (duplicates are counted and reported) and nothing may be sent in
 * plaintext.
 *
 * A second case, on the fake homeserver, kills the worker at the one moment where the SDK's
 * bookkeeping is the most fragile: a room key arrives for events that were waiting for it, and
 * the worker dies before those events were emitted.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import type { Dispatcher } from "undici";
import { CryptoWorkerCrashedError, MatrixSdkError, type MatrixClient } from "../../src/index.js";
import type { SynapseHandle } from "../harness/synapse.js";
import { PASSWORD, Recorder, startClient, synapse, uniqueName } from "../integration/helpers.js";
import { FakeHomeserver, FAKE_SERVER_NAME, encryptedRoomState, joinedRoom } from "./fakeServer.js";
import { ClientEvents, LogCapture, fakeClient, recordingAgent, sleep, tempDir, waitFor, waitForProgress, type SyncLog } from "./helpers.js";
import { OlmPeer, initOlm, recipientFromUpload } from "../support/olmPeer.js";

type Json = Record<string, unknown>;

const errName = (e: unknown): string => (MatrixSdkError.isSdkError(e) ? `${e.name}(${e.code})` : e instanceof Error ? `untyped ${e.name}: ${e.message}` : String(e));

describe("crypto worker crashes during encrypted traffic (real Synapse)", { timeout: 300_000 }, () => {
  let hs: SynapseHandle;
  let alice: { client: MatrixClient; rec: Recorder };
  let bob: { client: MatrixClient; rec: Recorder };
  let bobEv: ClientEvents;
  let aliceEv: ClientEvents;
  let bobAgent: Dispatcher;
  const syncLog: SyncLog = { sinces: [], limited: 0, pairs: [] };
  /** Filled by the first test, checked by the second. */
  const outcome = { sent: 0, lostNeverSeen: [] as string[], limited: 0 };
  let roomId = "";

  before(async () => {
    hs = await synapse();
    const a = await hs.registerUser(uniqueName("wcalice"), PASSWORD);
    const b = await hs.registerUser(uniqueName("wcbob"), PASSWORD);
    bobAgent = recordingAgent(syncLog);
    alice = await startClient(hs, a.userId, tempDir("sdk-wc-alice-"));
    bob = await startClient(hs, b.userId, tempDir("sdk-wc-bob-"), { dispatcher: bobAgent, restoreDeviceId: true });
    aliceEv = new ClientEvents(alice.client);
    bobEv = new ClientEvents(bob.client);
    const room = await alice.client.createRoom({ encrypted: true, invite: [b.userId] });
    roomId = room.roomId;
    await bob.rec.waitFor(() => bob.client.getRooms().some((r) => r.roomId === roomId), "Bob's invite");
    await bob.client.joinRoom(roomId);
    await alice.rec.waitFor(
      () => alice.rec.events.some((e) => e.roomId === roomId && e.type === "m.room.member" && e.stateKey === b.userId && e.content.membership === "join"),
      "Alice seeing Bob join",
    );
    await room.sendText("warm-up");
    await bob.rec.waitFor(() => bob.rec.bodies(roomId).includes("warm-up"), "Bob decrypting the warm-up message");
  });

  after(async () => {
    await Promise.all([alice?.client.close(), bob?.client.close()]);
    await bobAgent?.close();
  });

  it("kills the receiver's worker ~15 times and the sender's mid-send: every message decrypted, none lost, none in plaintext", async () => {
    const started = Date.now();
    const room = alice.client.getRoom(roomId);
    const sent = new Map<string, string>(); // event ID → body
    const sendRejections: Record<string, number> = {};
    let untyped = 0;
    let crashRejections = 0;

    async function sendWithRetry(body: string): Promise<void> {
      for (let attempt = 0; attempt < 30; attempt++) {
        try {
          const id = await room.sendText(body);
          sent.set(id, body);
          return;
        } catch (e) {
          const n = errName(e);
          sendRejections[n] = (sendRejections[n] ?? 0) + 1;
          if (e instanceof CryptoWorkerCrashedError) crashRejections++;
          if (!MatrixSdkError.isSdkError(e)) untyped++;
          await sleep(50);
        }
      }
      throw new Error(`gave up sending ${body}`);
    }

    // Receiver-side kills from inside event listeners: the worker dies while the sync that
    // carried these events is still being processed (before its token is committed).
    const uniqueSeen = new Set<string>();
    let listenerKills = 0;
    bob.client.on("room.event", (e) => {
      if (e.roomId !== roomId || e.type !== "m.room.message" || uniqueSeen.has(e.eventId)) return;
      uniqueSeen.add(e.eventId);
      if (uniqueSeen.size % 6 === 0) {
        listenerKills++;
        void bob.client.cryptoHostForTesting!.terminateForTesting();
      }
    });

    // Receiver-side kills on a timer (whatever the worker is doing).
    let sending = true;
    let timerKills = 0;
    const killer = (async () => {
      while (sending) {
        await sleep(350 + Math.random() * 600);
        if (!sending) break;
        timerKills++;
        await bob.client.cryptoHostForTesting!.terminateForTesting();
      }
    })();

    // Sender-side kills in the middle of sends: the worker is killed right after the send posted
    // one of its worker calls (encryptRoomEventIfReady, the one call of a send once the room key
    // is shared; or one of the full path's: prepareRoomKeyShare, shareRoomKey, encryptRoomEvent).
    const aliceHost = alice.client.cryptoHostForTesting!;
    const origCall = aliceHost.call.bind(aliceHost);
    let killOn: string | null = null;
    aliceHost.call = (method: string, args: unknown[]) => {
      const pending = origCall(method, args);
      if (killOn === method) {
        killOn = null;
        void aliceHost.terminateForTesting();
      }
      return pending;
    };
    const killPoints = ["encryptRoomEventIfReady", "prepareRoomKeyShare", "encryptRoomEventIfReady", "shareRoomKey", "encryptRoomEventIfReady", "encryptRoomEvent"];
    const N = 90;
    const chains = 3;
    const per = N / chains;
    let midSendKills = 0;
    const senders = Array.from({ length: chains }, async (_, c) => {
      for (let i = 0; i < per; i++) {
        const body = `wc ${c}-${i}`;
        if (c === 0 && i % 5 === 2) {
          killOn = killPoints[midSendKills++ % killPoints.length]!;
          try {
            sent.set(await room.sendText(body), body);
            continue;
          } catch (e) {
            const n = errName(e);
            sendRejections[n] = (sendRejections[n] ?? 0) + 1;
            if (e instanceof CryptoWorkerCrashedError) crashRejections++;
            if (!MatrixSdkError.isSdkError(e)) untyped++;
          } finally {
            killOn = null;
          }
        }
        await sendWithRetry(body);
      }
    });
    await Promise.all(senders);
    sending = false;
    await killer;
    aliceHost.call = origCall;

    // Everything sent must reach Bob.
    const bodies = new Set(sent.values());
    await waitForProgress(() => [...sent.keys()].filter((id) => uniqueSeen.has(id)).length, sent.size, 6000, 60_000);
    const received = bob.rec.messages(roomId).filter((e) => e.content.body !== "warm-up");
    const perId = new Map<string, number>();
    for (const e of received) perId.set(e.eventId, (perId.get(e.eventId) ?? 0) + 1);
    const lost = [...sent.keys()].filter((id) => !perId.has(id));
    const duplicates = [...perId.values()].reduce((a, n) => a + (n - 1), 0);
    const stray = [...perId.keys()].filter((id) => !sent.has(id));
    const bobCrashErrors = bobEv.errors.filter((e) => e instanceof CryptoWorkerCrashedError).length;
    // Lost events the receiver had seen (emitted undecryptable) vs never seen at all (skipped by a
    // limited sync timeline, which the SDK does not back-fill).
    const seenIds = new Set([...bobEv.utds.map((u) => u.eventId), ...bobEv.events.map((e) => e.eventId)]);
    const lostSeen = lost.filter((id) => seenIds.has(id));
    const lostNeverSeen = lost.filter((id) => !seenIds.has(id));
    outcome.sent = sent.size;
    outcome.lostNeverSeen = lostNeverSeen.map((id) => sent.get(id)!);
    outcome.limited = syncLog.limited;
    const lostInfo = lost.map((id) => {
      const utds = bobEv.utds.filter((u) => u.eventId === id).map((u) => `${u.code}@${u.sessionId?.slice(0, 8)}`);
      const sid = bobEv.utds.find((u) => u.eventId === id)?.sessionId;
      const key = sid ? bobEv.roomKeys.some((k) => k.sessionId === sid) : false;
      return `${sent.get(id)}: utd ${utds.join(",") || "none"}, key received ${key}`;
    });
    if (lost.length) console.log(`# lost: ${lostInfo.join(" | ")}`);
    const bobOtherErrors = bobEv.errors.filter((e) => !(e instanceof CryptoWorkerCrashedError)).map(errName);

    // Nothing in plaintext on the server.
    const res = await fetch(`${hs.baseUrl}/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/messages?dir=b&limit=1000`, { headers: { authorization: `Bearer ${alice.client.accessToken!}` } });
    const chunk = ((await res.json()) as { chunk: Json[] }).chunk;
    const plaintext = chunk.filter((e) => e.type === "m.room.message").length;
    const encryptedOnServer = chunk.filter((e) => e.type === "m.room.encrypted").length;

    // The sync always resumed from the last committed token: each committed sync was fetched with
    // `since` = the token committed before it (whatever was fetched and dropped in between).
    await bob.client.stop();
    const badSince: string[] = [];
    for (let i = 1; i < bobEv.syncs.length; i++) {
      const prev = bobEv.syncs[i - 1]!;
      const cur = bobEv.syncs[i]!;
      if (cur !== prev && !syncLog.pairs!.some((p) => p.next === cur && p.since === prev)) badSince.push(`${prev} → ${cur}`);
    }
    const stored = await bob.client.cryptoHostForTesting!.api.getSyncToken();
    bob.client.start();

    console.log(
      `# worker crashes: receiver ${bobEv.crashed} (timer kills ${timerKills}, kills mid-sync from listeners ${listenerKills}), restarts ${bobEv.restarted} (crashes needing a restart: ${bobEv.crashEpisodes}); ` +
        `sender ${aliceEv.crashed} crashes (${midSendKills} kills right after a send's worker call was posted; ${crashRejections} sends rejected with CryptoWorkerCrashedError, all retried)`,
    );
    console.log(
      `# messages sent ${sent.size}/${N} (unique bodies ${bodies.size}), received unique ${perId.size}, lost ${lost.length} (${lostNeverSeen.length} never delivered by a limited sync), duplicates ${duplicates}, stray ${stray.length}; ` +
        `send rejections ${JSON.stringify(sendRejections)}; receiver errors: ${bobCrashErrors} CryptoWorkerCrashedError, others ${JSON.stringify(bobOtherErrors.slice(0, 5))}; ` +
        `server events: ${encryptedOnServer} encrypted, ${plaintext} plaintext; ${syncLog.sinces.length} syncs (${syncLog.limited} with a limited timeline); ${((Date.now() - started) / 1000).toFixed(1)} s`,
    );

    assert.equal(sent.size, N, "every message must eventually be sent (retrying typed errors)");
    assert.equal(untyped, 0, "a send rejected with an untyped error");
    assert.ok(crashRejections >= 1, "no send killed mid-way was rejected with CryptoWorkerCrashedError");
    assert.ok(bobEv.crashed >= 8, `only ${bobEv.crashed} receiver crashes`);
    assert.ok(bobEv.restarted >= bobEv.crashEpisodes - 1, `the receiver's worker did not restart after each crash (${bobEv.crashEpisodes} crashes needing a restart, ${bobEv.restarted} restarts)`);
    assert.ok(bobCrashErrors >= 1, "the receiver never emitted a CryptoWorkerCrashedError");
    assert.deepEqual(lostSeen.map((id) => sent.get(id)), [], "events the receiver saw (undecryptable at first) were never decrypted");
    assert.deepEqual(stray, []);
    assert.equal(plaintext, 0, "a message was sent in plaintext");
    assert.deepEqual(badSince, [], "a committed sync was not fetched from the previously committed token");
    assert.equal(stored, bobEv.lastToken, "the worker's stored sync token differs from the last committed one");
    // The client is healthy afterwards.
    await room.sendText("after the storm");
    await bob.rec.waitFor(() => bob.rec.bodies(roomId).includes("after the storm"), "Bob decrypting after the crashes");
  });

  it(
    "no message is lost when the receiver falls behind during restarts (limited sync timelines are back-filled)",
    () => {
      assert.ok(outcome.sent > 0, "the previous test did not run");
      assert.deepEqual(outcome.lostNeverSeen, [], `${outcome.lostNeverSeen.length} messages never delivered (${outcome.limited} syncs had a limited timeline)`);
    },
  );
});

describe("worker crash between a late room key and the emission of the events waiting for it (fake homeserver)", { timeout: 60_000 }, () => {
  const logs = new LogCapture();
  let fake: FakeHomeserver;
  let client: MatrixClient;
  let peer: OlmPeer;

  before(async () => {
    await initOlm();
  });
  after(async () => {
    await client?.close();
    await fake?.close();
    peer?.free();
  });

  it(
    "an event that waited for its key is emitted even if the worker dies right after the key was stored",
    async () => {
      const ME = `@me:${FAKE_SERVER_NAME}`;
      const PEER = `@peer:${FAKE_SERVER_NAME}`;
      const ROOM = `!late:${FAKE_SERVER_NAME}`;
      fake = new FakeHomeserver(ME);
      peer = new OlmPeer(PEER, "PEERDEV");
      fake.publishDevice(PEER, "PEERDEV", peer.deviceKeys());
      client = fakeClient(fake, logs);
      const ev = new ClientEvents(client);
      await client.login(ME, "pw");
      const { recipient, otks } = recipientFromUpload(fake.uploads.find((u) => u.status === 200)!.body, ME, client.deviceId!);
      peer.openSession(recipient, otks[0]!);
      client.start();
      const deliver = async (batch: Json): Promise<void> => {
        const token = FakeHomeserver.tokenAfter(fake.queueSync(batch));
        await waitFor(() => ev.syncs.includes(token), "the batch to be processed");
      };
      await deliver({ rooms: { join: { [ROOM]: joinedRoom(encryptedRoomState(ROOM, PEER, [ME, PEER])) } } });
      await waitFor(async () => (await client.getDevices(PEER)).length === 1, "the peer's device");

      // E1 arrives before its key: undecryptable for now (missing_session), kept waiting.
      peer.newMegolm("S");
      const roomKey = peer.roomKeyContent("S", ROOM); // shared from index 0
      const e1 = peer.megolmEvent("S", ROOM, { msgtype: "m.text", body: "early" }, fake.eventId("early"));
      await deliver({ rooms: { join: { [ROOM]: joinedRoom([], [e1]) } } });
      assert.equal(ev.utds.find((u) => u.eventId === e1.event_id)?.code, "missing_session");

      // The key arrives together with E2; the worker dies as soon as the key was reported.
      const e2 = peer.megolmEvent("S", ROOM, { msgtype: "m.text", body: "late" }, fake.eventId("late"));
      client.once("room.key", () => void client.cryptoHostForTesting!.terminateForTesting());
      await deliver({ to_device: { events: [peer.olmToDevice(recipient, "m.room_key", roomKey)] }, rooms: { join: { [ROOM]: joinedRoom([], [e2]) } } });
      assert.ok(ev.crashed >= 1, "the worker did not crash");
      await waitFor(() => ev.events.some((e) => e.eventId === e2.event_id), "E2 to be decrypted");
      const crashErrors = ev.errors.filter((e) => e instanceof CryptoWorkerCrashedError).length;
      console.log(`# late-key case: worker crashes ${ev.crashed}, CryptoWorkerCrashedError emitted ${crashErrors}, batch served ${fake.served.get(fake.batchCount - 1)} times`);
      await waitFor(() => ev.events.some((e) => e.eventId === e1.event_id), "E1 (which waited for the key) to be emitted", 3000);
    },
  );
});
