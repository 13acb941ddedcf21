/**
 * An encrypted send into a room whose key already reached every recipient reads (almost) nothing
 * from the store: the outbound record, the room's members, their devices, tracked flags and
 * cross-signing settings come from the engine's copies of committed state (`StoreMirrors`). And
 * those copies never hide a change: a device blacklisted, unverified, added or removed, or a member
 * who joins or leaves between two sends is honoured by the very next send.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { UnknownDevicesError, VerifiedUserChangedIdentityError } from "../../../src/protocol/errors.js";
import { KeyServer, Peer, countStoreReads, roomState } from "../helpers.js";

const ROOM = "!send:example.org";
const ENCRYPTION = { algorithm: "m.megolm.v1.aes-sha2", rotation_period_msgs: 1000 };
type Json = Record<string, unknown>;

const total = (c: Map<string, number>): number => [...c.values()].reduce((a, n) => a + n, 0);

/** Alice (A), Bob's devices B1 and B2, and `others` more users, all joined in ROOM; device lists fetched. */
async function world(others = 0): Promise<{ server: KeyServer; alice: Peer; b1: Peer; b2: Peer; members: Record<string, string> }> {
  const server = new KeyServer();
  const alice = await Peer.create(server, "@alice:example.org", "A");
  const b1 = await Peer.create(server, "@bob:example.org", "B1");
  const b2 = await Peer.create(server, "@bob:example.org", "B2");
  const peers = [alice, b1, b2];
  for (let i = 0; i < others; i++) peers.push(await Peer.create(server, `@u${i}:example.org`, `U${i}`));
  const members = Object.fromEntries(peers.map((p) => [p.userId, "join"]));
  for (const p of peers) {
    await p.sync({ rooms: [roomState(ROOM, members, ENCRYPTION)] });
    await p.flush();
  }
  return { server, alice, b1, b2, members };
}

/** The send's one call: the encrypted content, or null when the key must be (re)shared first. */
async function fast(p: Peer, body: string, verify = false): Promise<Json | null> {
  const c = await p.engine.encryptRoomEventIfReady(ROOM, "m.room.message", JSON.stringify({ msgtype: "m.text", body }), verify);
  return c === null ? null : (JSON.parse(c) as Json);
}

const inbox = (server: KeyServer, userId: string, deviceId: string): string[] => (server.inbox.get(`${userId}|${deviceId}`) ?? []).map((e) => e.type as string);
const clearInboxes = (server: KeyServer): void => {
  for (const k of server.inbox.keys()) server.inbox.set(k, []);
};

describe("engine: store reads of an encrypted send", () => {
  it("after the first send, N more sends to a shared room read the store O(1) times in total (not O(N), not O(recipients))", async () => {
    const { alice } = await world(4);
    const BOB = "@bob:example.org";
    await alice.encrypt(ROOM, "shares the key", "$0");
    // The policy path with trust flags too: every device verified, sends with verifyDevices on.
    for (const d of ["B1", "B2"]) await alice.engine.setDeviceFlags(BOB, d, { verified: true });
    for (let i = 0; i < 4; i++) await alice.engine.setDeviceFlags(`@u${i}:example.org`, `U${i}`, { verified: true });
    assert.ok(await fast(alice, "warm", true), "the key reached every device: one call");
    const counts = countStoreReads(alice.store);
    const reads = async (n: number, verify: boolean): Promise<{ total: number; byMethod: Json }> => {
      counts.clear();
      for (let i = 0; i < n; i++) assert.ok(await fast(alice, `m${i}`, verify), `send ${i} needed a share`);
      return { total: total(counts), byMethod: Object.fromEntries(counts) };
    };
    for (const verify of [false, true]) {
      const few = await reads(5, verify);
      const many = await reads(60, verify);
      assert.deepEqual(many.byMethod, few.byMethod, `store reads grew with the number of sends (verifyDevices ${verify})`);
      assert.ok(many.total <= 2, `60 sends read the store ${many.total} times: ${JSON.stringify(many.byMethod)}`);
    }
  });

  it("a device blacklisted between two sends gets no key from the very next send (withheld notice, new session)", async () => {
    const { server, alice, b1 } = await world();
    const first = await alice.encrypt(ROOM, "shares the key", "$0");
    assert.ok(await fast(alice, "fast"));
    await alice.engine.setDeviceFlags(b1.userId, "B2", { blacklisted: true });
    clearInboxes(server);
    assert.equal(await fast(alice, "after the blacklisting"), null, "the fast path used a session a blacklisted device holds");
    const ev = await alice.encrypt(ROOM, "after", "$1");
    assert.notEqual((ev.content as Json).session_id, (first.content as Json).session_id);
    assert.deepEqual(inbox(server, b1.userId, "B2"), ["m.room_key.withheld"]);
    assert.deepEqual(inbox(server, b1.userId, "B1"), ["m.room.encrypted"]);
    assert.ok(await fast(alice, "and on"));
    assert.deepEqual(inbox(server, b1.userId, "B2"), ["m.room_key.withheld"]);
  });

  it("a device unverified between two sends makes the very next send with verifyDevices throw UnknownDevicesError, and verifying it again lets it through", async () => {
    const { alice, b1 } = await world();
    for (const d of ["B1", "B2"]) await alice.engine.setDeviceFlags(b1.userId, d, { verified: true });
    await alice.encrypt(ROOM, "shares the key", "$0", true);
    assert.ok(await fast(alice, "fast", true));
    await alice.engine.setDeviceFlags(b1.userId, "B2", { verified: false });
    await assert.rejects(fast(alice, "unverified", true), (e: unknown) => e instanceof UnknownDevicesError && Object.keys(e.userDevices).join() === b1.userId);
    await alice.engine.setDeviceFlags(b1.userId, "B2", { ignored: true });
    assert.ok(await fast(alice, "ignored", true));
  });

  it("a device added by /keys/query between two sends receives the key before the next message", async () => {
    const { server, alice, b1, members } = await world();
    await alice.encrypt(ROOM, "shares the key", "$0");
    assert.ok(await fast(alice, "fast"));
    const b3 = await Peer.create(server, b1.userId, "B3");
    await b3.sync({ rooms: [roomState(ROOM, members, ENCRYPTION)] });
    await alice.sync({ deviceLists: { changed: [b1.userId] } });
    assert.equal(await fast(alice, "stale list"), null, "sent with a device list known to be stale");
    await alice.flush(); // the /keys/query: B3 is known now
    assert.equal(await fast(alice, "new device"), null, "the fast path skipped a device that lacks the key");
    const ev = await alice.encrypt(ROOM, "for B3 too", "$3");
    await b3.sync();
    const [r] = await b3.engine.decryptRoomEvents(ROOM, [ev]);
    assert.ok(r?.ok, "the new device cannot read the next message");
    assert.ok(await fast(alice, "and on"));
  });

  it("a device removed by /keys/query between two sends no longer gets the key: the next send rotates", async () => {
    const { server, alice, b1 } = await world();
    const first = await alice.encrypt(ROOM, "shares the key", "$0");
    assert.ok(await fast(alice, "fast"));
    server.deviceKeys.get(b1.userId)!.delete("B2");
    await alice.sync({ deviceLists: { changed: [b1.userId] } });
    await alice.flush();
    assert.equal(await fast(alice, "B2 gone"), null, "the fast path kept a session a removed device holds");
    clearInboxes(server);
    const ev = await alice.encrypt(ROOM, "without B2", "$1");
    assert.notEqual((ev.content as Json).session_id, (first.content as Json).session_id);
    assert.deepEqual(inbox(server, b1.userId, "B2"), []);
    assert.deepEqual(inbox(server, b1.userId, "B1"), ["m.room.encrypted"]);
  });

  it("a member who joins between two sends gets the key before the next message; one who leaves makes it rotate", async () => {
    const { server, alice, b1, members } = await world();
    const first = await alice.encrypt(ROOM, "shares the key", "$0");
    assert.ok(await fast(alice, "fast"));
    const carol = await Peer.create(server, "@carol:example.org", "C");
    const withCarol = { ...members, [carol.userId]: "join" };
    await carol.sync({ rooms: [roomState(ROOM, withCarol, ENCRYPTION)] });
    await alice.sync({ rooms: [{ roomId: ROOM, membership: "join", stateEvents: [{ type: "m.room.member", state_key: carol.userId, content: { membership: "join" } }] }] });
    assert.equal(await fast(alice, "carol joined"), null, "the fast path skipped a new member");
    const ev = await alice.encrypt(ROOM, "for carol too", "$c");
    await carol.sync();
    const [r] = await carol.engine.decryptRoomEvents(ROOM, [ev]);
    assert.ok(r?.ok, "the new member cannot read the next message");
    assert.ok(await fast(alice, "fast again"));
    await alice.sync({ rooms: [{ roomId: ROOM, membership: "join", stateEvents: [{ type: "m.room.member", state_key: b1.userId, content: { membership: "leave" } }] }] });
    assert.equal(await fast(alice, "bob left"), null, "the fast path kept a session a member who left holds");
    clearInboxes(server);
    const after = await alice.encrypt(ROOM, "without bob", "$l");
    assert.notEqual((after.content as Json).session_id, (first.content as Json).session_id);
    assert.deepEqual([...inbox(server, b1.userId, "B1"), ...inbox(server, b1.userId, "B2")], []);
  });

  it("a verified user whose cross-signing identity changes between two sends blocks the very next send until the change is acknowledged", async () => {
    const { server, alice, b1 } = await world();
    const bootstrap = async (p: Peer): Promise<void> => {
      const boot = await p.engine.prepareCrossSigning();
      server.uploadCrossSigning(p.userId, boot.deviceSigningUpload, boot.signatureUpload);
      await p.engine.commitCrossSigning(boot.masterKey);
    };
    await bootstrap(alice);
    await bootstrap(b1);
    await alice.sync({ deviceLists: { changed: [b1.userId] } });
    await alice.flush();
    await alice.engine.verifyUser(b1.userId);
    assert.equal(alice.engine.getUserIdentity(b1.userId).verified, true);
    await alice.encrypt(ROOM, "shares the key", "$0");
    assert.ok(await fast(alice, "fast"));
    await bootstrap(b1); // Bob's new identity, published
    await alice.sync({ deviceLists: { changed: [b1.userId] } });
    await alice.flush();
    assert.equal(alice.engine.getUserIdentity(b1.userId).changed, true);
    await assert.rejects(fast(alice, "to the changed identity"), (e: unknown) => e instanceof VerifiedUserChangedIdentityError && e.userIds.join() === b1.userId);
    await alice.engine.acknowledgeIdentityChange(b1.userId);
    assert.ok(await fast(alice, "after acknowledging"));
  });
});
