/**
 * Key claims are single flight (DESIGN §3, second rule; issue 13 item 11): a device is never
 * claimed for twice at once, whoever asks. Two rooms sharing their keys with the same device at the
 * same time make one `/keys/claim` for it; so do a claim that repairs a broken Olm channel
 * (unwedging) and a room-key share racing for the same device, in either order. One one-time key
 * is used and the device sees one Olm session (raw-libolm peers decrypt everything the client sent
 * them). Real client and worker; a fake homeserver that answers claims slowly so that they overlap.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import type { MatrixClient } from "../../src/index.js";
import { FakeHomeserver, FAKE_SERVER_NAME, encryptedRoomState, isObj, joinedRoom } from "./fakeServer.js";
import { ClientEvents, LogCapture, fakeClient, waitFor } from "./helpers.js";
import { OLM, OlmPeer, PeerInbox, initOlm } from "../support/olmPeer.js";

type Json = Record<string, unknown>;

const ME = `@me:${FAKE_SERVER_NAME}`;
const room = (name: string): string => `!${name}:${FAKE_SERVER_NAME}`;

describe("one /keys/claim per device, whoever claims (fake homeserver, real worker)", { timeout: 120_000 }, () => {
  const logs = new LogCapture();
  let fake: FakeHomeserver;
  let client: MatrixClient;
  let ev: ClientEvents;
  const peers: Record<string, { peer: OlmPeer; inbox: PeerInbox }> = {};
  const OTKS = 5;

  /** Deliver a sync batch and wait until the client processed it. */
  async function deliver(batch: Json): Promise<void> {
    const token = FakeHomeserver.tokenAfter(fake.queueSync(batch));
    await waitFor(() => ev.syncs.includes(token), `sync ${token}`);
  }
  /** `/keys/claim` requests that asked for a key of `p`'s device. */
  const claimsFor = (p: OlmPeer): number =>
    fake.callsTo(/\/keys\/claim/).filter((c) => {
      const otk = (JSON.parse(c.body ?? "{}") as Json).one_time_keys;
      return isObj(otk) && isObj(otk[p.userId]) && (otk[p.userId] as Json)[p.deviceId] !== undefined;
    }).length;
  const otksLeft = (p: OlmPeer): number => fake.otks.get(`${p.userId}|${p.deviceId}`)?.size ?? 0;
  /** Olm plaintexts of every to-device message the client sent to `name`'s device (decrypted by the peer, in order). */
  const received = new Map<string, Json[]>();
  function inboxOf(name: string): Json[] {
    const { peer, inbox } = peers[name]!;
    const seen = received.get(name) ?? [];
    const all = fake.toDevice.flatMap((t) => {
      const m = t.body.messages;
      const c = isObj(m) && isObj(m[peer.userId]) ? (m[peer.userId] as Json)[peer.deviceId] : undefined;
      return isObj(c) ? [c] : [];
    });
    for (const c of all.slice(seen.length)) seen.push(inbox.olm(c));
    received.set(name, seen);
    return seen;
  }
  /** A to-device Olm "message" from `p` for which the client has no session: it marks the device wedged. */
  const undecryptableFrom = (p: OlmPeer): Json => ({
    type: "m.room.encrypted",
    sender: p.userId,
    content: { algorithm: OLM, sender_key: p.curve25519, ciphertext: { [client.getIdentityKey()]: { type: 1, body: "AwogAAAA" } } },
  });
  /** The room message the client sent to `roomId`, decrypted by `name`'s peer. */
  function sentBody(name: string, roomId: string): unknown {
    const sends = fake.roomSends.filter((s) => s.roomId === roomId && s.eventType === "m.room.encrypted");
    assert.equal(sends.length, 1, `encrypted sends to ${roomId}`);
    return (peers[name]!.inbox.megolm(sends[0]!.body).content as Json).body;
  }

  before(async () => {
    await initOlm();
    fake = new FakeHomeserver(ME);
    client = fakeClient(fake, logs);
    ev = new ClientEvents(client);
    await client.login(ME, "pw");
    client.start();
    const rooms: Json = {};
    for (const [name, roomNames] of [["p1", ["A", "B"]], ["p2", ["C"]], ["p3", ["D"]]] as const) {
      const peer = new OlmPeer(`@${name}:${FAKE_SERVER_NAME}`, `${name.toUpperCase()}DEV`);
      fake.publishDevice(peer.userId, peer.deviceId, peer.deviceKeys());
      fake.publishOtks(peer.userId, peer.deviceId, peer.signedOtks(OTKS));
      peers[name] = { peer, inbox: new PeerInbox(peer) };
      for (const r of roomNames) {
        fake.setMember(room(r), ME);
        fake.setMember(room(r), peer.userId);
        rooms[room(r)] = joinedRoom(encryptedRoomState(room(r), peer.userId, [ME, peer.userId]));
      }
    }
    await deliver({ rooms: { join: rooms } });
    for (const { peer } of Object.values(peers)) {
      await waitFor(async () => (await client.getDevices(peer.userId)).some((d) => d.deviceId === peer.deviceId), `${peer.userId}'s device to be known`);
    }
  });

  after(async () => {
    await client?.close();
    await fake?.close();
    for (const { peer } of Object.values(peers)) peer.free();
  });

  it("two rooms sharing keys with the same device at once: one claim, one one-time key, one Olm session", async () => {
    const { peer, inbox } = peers.p1!;
    fake.claimDelayMs = 300;
    await Promise.all([client.getRoom(room("A")).sendText("to A"), client.getRoom(room("B")).sendText("to B")]);
    assert.equal(claimsFor(peer), 1);
    assert.equal(otksLeft(peer), OTKS - 1);
    const keys = inboxOf("p1").filter((pt) => pt.type === "m.room_key").map((pt) => (pt.content as Json).room_id);
    assert.deepEqual(keys.sort(), [room("A"), room("B")]);
    assert.equal(inbox.sessionsCreated, 1, "the peer saw more than one Olm session");
    assert.equal(sentBody("p1", room("A")), "to A");
    assert.equal(sentBody("p1", room("B")), "to B");
  });

  it("an unwedging claim in flight, then a room-key share for the same device: one claim; the m.dummy and the key use one session", async () => {
    const { peer, inbox } = peers.p2!;
    fake.claimDelayMs = 600;
    await deliver({ to_device: { events: [undecryptableFrom(peer)] } });
    assert.equal(ev.toDeviceFailures.at(-1)?.code, "olm_no_session");
    await waitFor(() => claimsFor(peer) === 1, "the unwedging claim");
    await client.getRoom(room("C")).sendText("to C");
    await waitFor(() => inboxOf("p2").some((pt) => pt.type === "m.dummy"), "the m.dummy of the unwedging");
    assert.equal(claimsFor(peer), 1);
    assert.equal(otksLeft(peer), OTKS - 1);
    assert.deepEqual(inboxOf("p2").filter((pt) => pt.type === "m.room_key").map((pt) => (pt.content as Json).room_id), [room("C")]);
    assert.equal(inbox.sessionsCreated, 1, "the peer saw more than one Olm session");
    assert.equal(sentBody("p2", room("C")), "to C");
  });

  it("a room-key share's claim in flight, then the device is found wedged: no second claim; the m.dummy uses the new session", async () => {
    const { peer, inbox } = peers.p3!;
    fake.claimDelayMs = 1500;
    const sent = client.getRoom(room("D")).sendText("to D");
    await waitFor(() => claimsFor(peer) === 1, "the room-key share's claim");
    await deliver({ to_device: { events: [undecryptableFrom(peer)] } });
    assert.equal(ev.toDeviceFailures.at(-1)?.code, "olm_no_session");
    await sent;
    await waitFor(() => inboxOf("p3").some((pt) => pt.type === "m.dummy"), "the m.dummy of the unwedging");
    assert.equal(claimsFor(peer), 1);
    assert.equal(otksLeft(peer), OTKS - 1);
    assert.equal(inbox.sessionsCreated, 1, "the peer saw more than one Olm session");
    assert.equal(sentBody("p3", room("D")), "to D");
    assert.equal(ev.crashed, 0);
  });
});
