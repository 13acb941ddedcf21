/**
 * Engine-layer test helpers: real engines with real libolm and a memory store, and a tiny
 * in-process key directory standing in for the homeserver's keys and to-device endpoints.
 */
import Olm from "@matrix-org/olm";
import { CryptoEngine } from "../../workers/engine/CryptoEngine.js";
import { MemoryCryptoStore } from "../../workers/store/memory/MemoryCryptoStore.js";
import type { OutgoingRequest, SyncChangesInput, SyncChangesOptions, SyncChangesResult } from "../../src/protocol/api.js";
import { noopLogger } from "../../src/pure/logger.js";

let olmReady: Promise<void> | null = null;
export function initOlm(): Promise<void> {
  olmReady ??= Olm.init();
  return olmReady;
}

type Json = Record<string, unknown>;

/** In-memory stand-in for the homeserver's /keys and /sendToDevice endpoints. */
export class KeyServer {
  deviceKeys = new Map<string, Map<string, Json>>();
  otks = new Map<string, Map<string, Json>>(); // user|device -> keyId -> key obj
  fallback = new Map<string, Json>();
  inbox = new Map<string, Json[]>(); // user|device -> to-device events
  changed = new Set<string>();
  /** userId -> the public cross-signing keys /keys/query returns for that user. */
  crossSigning = new Map<string, { master: Json; selfSigning: Json }>();

  /** /keys/device_signing/upload then /keys/signatures/upload (signatures merged into the device keys). */
  uploadCrossSigning(userId: string, deviceSigning: Json, signatures: Json): void {
    this.crossSigning.set(userId, { master: deviceSigning.master_key as Json, selfSigning: deviceSigning.self_signing_key as Json });
    for (const [deviceId, signed] of Object.entries((signatures[userId] ?? {}) as Record<string, Json>)) {
      const device = this.deviceKeys.get(userId)?.get(deviceId);
      if (!device) continue;
      const sigs = { ...(device.signatures as Record<string, Json>) };
      for (const [u, byKey] of Object.entries(signed.signatures as Record<string, Json>)) sigs[u] = { ...sigs[u], ...byKey };
      this.deviceKeys.get(userId)!.set(deviceId, { ...device, signatures: sigs });
    }
  }

  handle(userId: string, deviceId: string, r: OutgoingRequest): Json {
    const body = JSON.parse(r.body) as Json;
    const me = `${userId}|${deviceId}`;
    switch (r.kind) {
      case "keys_upload": {
        if (body.device_keys) {
          if (!this.deviceKeys.has(userId)) this.deviceKeys.set(userId, new Map());
          this.deviceKeys.get(userId)!.set(deviceId, body.device_keys as Json);
          this.changed.add(userId);
        }
        const mine = this.otks.get(me) ?? new Map<string, Json>();
        for (const [k, v] of Object.entries((body.one_time_keys as Json) ?? {})) {
          if (mine.has(k)) throw Object.assign(new Error(`One time key ${k} already exists`), { errcode: "M_INVALID_PARAM" });
          mine.set(k, v as Json);
        }
        this.otks.set(me, mine);
        for (const [k, v] of Object.entries((body.fallback_keys as Json) ?? {})) this.fallback.set(me, { [k]: v });
        return { one_time_key_counts: { signed_curve25519: mine.size } };
      }
      case "keys_query": {
        const out: Json = {};
        for (const u of Object.keys(body.device_keys as Json)) {
          const devs = this.deviceKeys.get(u);
          if (devs) out[u] = Object.fromEntries(devs);
        }
        const masterKeys: Json = {};
        const selfSigningKeys: Json = {};
        for (const u of Object.keys(body.device_keys as Json)) {
          const cs = this.crossSigning.get(u);
          if (cs) [masterKeys[u], selfSigningKeys[u]] = [cs.master, cs.selfSigning];
        }
        return { device_keys: out, master_keys: masterKeys, self_signing_keys: selfSigningKeys, failures: {} };
      }
      case "keys_claim": {
        const out: Json = {};
        for (const [u, devs] of Object.entries(body.one_time_keys as Record<string, Json>)) {
          for (const d of Object.keys(devs)) {
            const pool = this.otks.get(`${u}|${d}`);
            let entry: [string, Json] | undefined = pool ? [...pool.entries()][0] : undefined;
            if (entry) pool!.delete(entry[0]);
            else {
              const fb = this.fallback.get(`${u}|${d}`);
              if (fb) entry = Object.entries(fb)[0] as [string, Json];
            }
            if (entry) ((out[u] ??= {}) as Json)[d] = { [entry[0]]: entry[1] };
          }
        }
        return { one_time_keys: out, failures: {} };
      }
      case "to_device": {
        const msgs = body.messages as Record<string, Record<string, Json>>;
        for (const [u, devs] of Object.entries(msgs)) {
          for (const [d, content] of Object.entries(devs)) {
            const targets = d === "*" ? [...(this.deviceKeys.get(u)?.keys() ?? [])] : [d];
            for (const t of targets) {
              const k = `${u}|${t}`;
              if (!this.inbox.has(k)) this.inbox.set(k, []);
              this.inbox.get(k)!.push({ type: r.eventType, sender: userId, content });
            }
          }
        }
        return {};
      }
    }
  }
}

/** Options of a {@link Peer}'s engine. */
export interface PeerOptions {
  /** The engine's clock (ms since the epoch); `Date.now` by default. */
  now?: () => number;
}

/** A test participant: an engine plus helpers to run its requests against the KeyServer. */
export class Peer {
  engine: CryptoEngine;
  store = new MemoryCryptoStore();
  ed25519 = "";
  curve25519 = "";
  constructor(
    readonly server: KeyServer,
    readonly userId: string,
    readonly deviceId: string,
    store?: MemoryCryptoStore,
    opts: PeerOptions = {},
  ) {
    if (store) this.store = store;
    this.engine = new CryptoEngine({ olm: Olm, store: this.store, pickleKey: "test", logger: noopLogger, ...(opts.now ? { now: opts.now } : {}) });
  }

  static async create(server: KeyServer, userId: string, deviceId: string, store?: MemoryCryptoStore, opts: PeerOptions = {}): Promise<Peer> {
    await initOlm();
    const p = new Peer(server, userId, deviceId, store, opts);
    if (!store) await p.store.open();
    const info = await p.engine.loadAccount(userId, deviceId);
    p.ed25519 = info.ed25519;
    p.curve25519 = info.curve25519;
    await p.flush();
    return p;
  }

  async send(r: OutgoingRequest): Promise<void> {
    let res: Json;
    try {
      res = this.server.handle(this.userId, this.deviceId, r);
    } catch (e) {
      await this.engine.markRequestAsFailed(r.id, r.kind, "M_INVALID_PARAM", (e as Error).message);
      return;
    }
    await this.engine.markRequestAsSent(r.id, r.kind, JSON.stringify(res));
  }

  /** Run the outgoing-requests loop until it has nothing more to send. */
  async flush(): Promise<void> {
    for (let i = 0; i < 5; i++) {
      const reqs = await this.engine.outgoingRequests();
      if (!reqs.length) return;
      for (const r of reqs) await this.send(r);
    }
  }

  /** Deliver this peer's to-device inbox (and optional room state) as one sync. */
  async sync(extra: Partial<SyncChangesInput> = {}, opts: SyncChangesOptions = {}): Promise<SyncChangesResult> {
    const k = `${this.userId}|${this.deviceId}`;
    const toDevice = this.server.inbox.get(k) ?? [];
    this.server.inbox.set(k, []);
    const input: SyncChangesInput = { nextBatch: "s", toDevice, rooms: [], ...extra };
    if (extra.toDevice) input.toDevice = [...toDevice, ...extra.toDevice];
    return this.engine.receiveSyncChanges(input, opts);
  }

  /** Share the room key (query/claim/share) and encrypt one message; returns the room event. */
  async encrypt(roomId: string, body: string, eventId: string, verify = false): Promise<Json> {
    for (let i = 0; i < 4; i++) {
      const step = await this.engine.prepareRoomKeyShare(roomId, verify);
      if (step.ready) break;
      await this.send(step.request);
    }
    for (const r of await this.engine.shareRoomKey(roomId, verify)) await this.send(r);
    const content = await this.engine.encryptRoomEvent(roomId, "m.room.message", { msgtype: "m.text", body });
    return { type: "m.room.encrypted", event_id: eventId, sender: this.userId, origin_server_ts: 1000 + eventId.length, content };
  }
}

/**
 * Alice's device A1 and Bob share an encrypted room, Bob sends `$h` (A1 gets its key); then Alice's
 * second device A2 appears (it never got the key), and A1 learns it.
 */
export async function ownDevicesWithHistory(roomId: string): Promise<{ server: KeyServer; a1: Peer; a2: Peer; bob: Peer; ev: Json }> {
  const server = new KeyServer();
  const a1 = await Peer.create(server, "@alice:example.org", "A1");
  const bob = await Peer.create(server, "@bob:example.org", "B");
  const members = { [a1.userId]: "join", [bob.userId]: "join" };
  for (const p of [a1, bob]) {
    await p.sync({ rooms: [roomState(roomId, members)] });
    await p.flush();
  }
  const ev = await bob.encrypt(roomId, "history", "$h");
  await a1.sync();
  const a2 = await Peer.create(server, "@alice:example.org", "A2");
  await a2.sync({ rooms: [roomState(roomId, members)] });
  await a2.flush();
  await a1.sync({ deviceLists: { changed: [a1.userId] } });
  await a1.flush();
  return { server, a1, a2, bob, ev };
}

/**
 * `asker` fails to decrypt `ev` (and, with key requests on, asks its other devices), `answerer`
 * sees the request and answers it; returns `asker`'s sync that carries the answer.
 */
export async function requestAndForward(roomId: string, asker: Peer, answerer: Peer, ev: Json): Promise<SyncChangesResult> {
  asker.engine.setKeyRequestsEnabled(true);
  await asker.engine.decryptRoomEvents(roomId, [ev]);
  for (const x of await asker.engine.outgoingRequests()) await asker.send(x);
  const seen = await answerer.sync();
  const claim = answerer.engine.prepareKeyForwarding(seen.keyRequests.map((r) => r.deviceId));
  if (claim) await answerer.send(claim);
  for (const x of await answerer.engine.answerKeyRequests(seen.keyRequests)) await answerer.send(x);
  return asker.sync();
}

/** Room state events making `members` joined in an encrypted room. */
export function roomState(roomId: string, members: Record<string, string>, encryption: Json = { algorithm: "m.megolm.v1.aes-sha2" }): SyncChangesInput["rooms"][number] {
  const stateEvents: Json[] = [{ type: "m.room.encryption", state_key: "", content: encryption }];
  for (const [u, m] of Object.entries(members)) stateEvents.push({ type: "m.room.member", state_key: u, content: { membership: m } });
  return { roomId, membership: "join", stateEvents };
}

/** Alice and Bob (new engines on one KeyServer) joined in the encrypted room `roomId`, device lists fetched. */
export async function pairInRoom(roomId: string, opts: { alice?: PeerOptions; encryption?: Json } = {}): Promise<{ server: KeyServer; alice: Peer; bob: Peer }> {
  const server = new KeyServer();
  const alice = await Peer.create(server, "@alice:example.org", "A", undefined, opts.alice ?? {});
  const bob = await Peer.create(server, "@bob:example.org", "B");
  for (const p of [alice, bob]) {
    await p.sync({ rooms: [roomState(roomId, { [alice.userId]: "join", [bob.userId]: "join" }, opts.encryption)] });
    await p.flush();
  }
  return { server, alice, bob };
}

/** An Olm to-device event from `from` to `to` that no session can decrypt (a wedged channel). */
export function wedgedOlmEvent(from: Peer, to: Peer): Json {
  return { type: "m.room.encrypted", sender: from.userId, content: { algorithm: "m.olm.v1.curve25519-aes-sha2", sender_key: from.curve25519, ciphertext: { [to.curve25519]: { type: 1, body: "AwogAAAA" } } } };
}

/** The reads of the `CryptoStore` interface. */
export const STORE_READS = ["listAccounts", "getStoredDeviceId", "getOlmSessions", "getInboundGroupSession", "countInboundGroupSessions", "listInboundGroupSessions", "countInboundGroupSessionsToBackUp", "listInboundGroupSessionsToBackUp", "getOutboundGroupSession", "getUserDevices", "getDevice", "getDeviceByCurve25519", "getTrackedUsers", "getRoom", "getRoomMembers", "getReplayRecord", "getPendingEvents", "countPendingEvents", "hasToDeviceDigest", "getSyncToken", "getValue"] as const;

/**
 * Count every read of `store` through its interface, per method; with `perKey`, `getValue` is
 * also counted per key (as `getValue:key`).
 */
export function countStoreReads(store: object, opts: { perKey?: boolean } = {}): Map<string, number> {
  const counts = new Map<string, number>();
  const target = store as Record<string, unknown>;
  for (const name of STORE_READS) {
    const fn = target[name] as (...a: unknown[]) => unknown;
    if (typeof fn !== "function") throw new Error(`the store has no ${name}`);
    target[name] = (...args: unknown[]): unknown => {
      counts.set(name, (counts.get(name) ?? 0) + 1);
      if (opts.perKey && name === "getValue") counts.set(`getValue:${String(args[0])}`, (counts.get(`getValue:${String(args[0])}`) ?? 0) + 1);
      return fn.apply(store, args);
    };
  }
  return counts;
}
