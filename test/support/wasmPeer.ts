/**
 * A matrix-sdk-crypto-wasm `OlmMachine` (the Rust crypto behind matrix-js-sdk and Element) logged
 * in to a homeserver and driven like a client: `/sync` feeds its to-device events, device-list
 * changes and key counts; every outgoing request it asks for is sent and reported back.
 */
import * as wasm from "@matrix-org/matrix-sdk-crypto-wasm";

type Json = Record<string, unknown>;

/** Outgoing request of the Rust machine (every kind carries these). */
interface RustRequest {
  id: string;
  type: wasm.RequestType;
  body: string;
  event_type?: string;
  txn_id?: string;
  room_id?: string;
}

/** A room timeline event as this peer saw it (decrypted when it could be). */
export interface PeerRoomEvent {
  roomId: string;
  eventId: string;
  sender: string;
  type: string;
  content: Json;
  encrypted: boolean;
  /** `m.relates_to` of the event as the server has it (for an encrypted event: its cleartext part). */
  clearRelation: Json | undefined;
}

export class WasmPeer {
  private since: string | null = null;
  /** Encrypted rooms this peer joined, with the members it shares keys with. */
  private readonly encryptedRooms = new Map<string, string[]>();
  /** Timeline events seen in joined rooms. */
  readonly roomEvents: PeerRoomEvent[] = [];

  private constructor(
    readonly baseUrl: string,
    readonly userId: string,
    readonly deviceId: string,
    readonly accessToken: string,
    readonly machine: wasm.OlmMachine,
  ) {}

  /** Log in with a password (a new device) and create the machine. */
  static async login(baseUrl: string, userId: string, password: string): Promise<WasmPeer> {
    await wasm.initAsync();
    const res = await fetch(`${baseUrl}/_matrix/client/v3/login`, {
      method: "POST",
      body: JSON.stringify({ type: "m.login.password", identifier: { type: "m.id.user", user: userId }, password }),
    });
    const login = (await res.json()) as { access_token: string; device_id: string };
    const machine = await wasm.OlmMachine.initialize(new wasm.UserId(userId), new wasm.DeviceId(login.device_id));
    const peer = new WasmPeer(baseUrl, userId, login.device_id, login.access_token, machine);
    await peer.flush();
    return peer;
  }

  /** An authenticated request; throws on an error status. */
  async call(method: string, path: string, body?: unknown): Promise<Json> {
    const res = await fetch(`${this.baseUrl}${path}`, {
      method,
      headers: { authorization: `Bearer ${this.accessToken}`, "content-type": "application/json" },
      ...(body === undefined ? {} : { body: typeof body === "string" ? body : JSON.stringify(body) }),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
    return text ? (JSON.parse(text) as Json) : {};
  }

  /** Send one request of the machine and report the answer. */
  async send(r: RustRequest): Promise<void> {
    let res: Json;
    switch (r.type) {
      case wasm.RequestType.KeysUpload:
        res = await this.call("POST", "/_matrix/client/v3/keys/upload", r.body);
        break;
      case wasm.RequestType.KeysQuery:
        res = await this.call("POST", "/_matrix/client/v3/keys/query", r.body);
        break;
      case wasm.RequestType.KeysClaim:
        res = await this.call("POST", "/_matrix/client/v3/keys/claim", r.body);
        break;
      case wasm.RequestType.ToDevice:
        res = await this.call("PUT", `/_matrix/client/v3/sendToDevice/${encodeURIComponent(r.event_type!)}/${encodeURIComponent(r.txn_id!)}`, r.body);
        break;
      case wasm.RequestType.SignatureUpload:
        res = await this.call("POST", "/_matrix/client/v3/keys/signatures/upload", r.body);
        break;
      case wasm.RequestType.RoomMessage:
        res = await this.sendRoomEvent(r.room_id!, r.event_type!, r.body, r.txn_id!);
        break;
      default:
        return;
    }
    await this.machine.markRequestAsSent(r.id, r.type, JSON.stringify(res));
  }

  /** Send a room event, encrypted (after sharing the room key with the members) in an encrypted room. */
  async sendRoomEvent(roomId: string, type: string, body: string, txnId = `w${Date.now()}${Math.random()}`): Promise<Json> {
    const members = this.encryptedRooms.get(roomId);
    if (!members) return this.call("PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/${encodeURIComponent(type)}/${encodeURIComponent(txnId)}`, body);
    const users = (): wasm.UserId[] => members.map((u) => new wasm.UserId(u));
    await this.machine.updateTrackedUsers(users());
    // Only the key queries: a full flush from here would send the room message being sent again.
    for (const r of (await this.machine.outgoingRequests()) as RustRequest[]) if (r.type === wasm.RequestType.KeysQuery) await this.send(r);
    const claim = (await this.machine.getMissingSessions(users())) as RustRequest | null;
    if (claim) await this.send(claim);
    for (const r of (await this.machine.shareRoomKey(new wasm.RoomId(roomId), users(), new wasm.EncryptionSettings())) as RustRequest[]) await this.send(r);
    const encrypted = await this.machine.encryptRoomEvent(new wasm.RoomId(roomId), type, body);
    return this.call("PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.encrypted/${encodeURIComponent(txnId)}`, encrypted);
  }

  /** Join a room; in an encrypted one, this peer encrypts for `members` and decrypts what arrives. */
  async join(roomId: string, opts: { encryptedFor?: string[] } = {}): Promise<void> {
    await this.call("POST", `/_matrix/client/v3/join/${encodeURIComponent(roomId)}`, {});
    if (opts.encryptedFor) this.encryptedRooms.set(roomId, opts.encryptedFor);
  }

  /**
   * Cross-signing for this peer's user (the Rust machine creates the keys; the upload is
   * authenticated with the password), so what it verifies is signed and uploaded.
   */
  async bootstrapCrossSigning(password: string): Promise<void> {
    const reqs = await this.machine.bootstrapCrossSigning(true);
    if (reqs.uploadKeysRequest) await this.send(reqs.uploadKeysRequest as RustRequest);
    const body = JSON.parse(reqs.uploadSigningKeysRequest.body) as Json;
    const first = await fetch(`${this.baseUrl}/_matrix/client/v3/keys/device_signing/upload`, { method: "POST", headers: { authorization: `Bearer ${this.accessToken}` }, body: JSON.stringify(body) });
    if (first.status === 401) {
      const session = ((await first.json()) as { session: string }).session;
      await this.call("POST", "/_matrix/client/v3/keys/device_signing/upload", { ...body, auth: { type: "m.login.password", identifier: { type: "m.id.user", user: this.userId }, password, session } });
    } else if (!first.ok) throw new Error(`device_signing/upload: ${first.status} ${await first.text()}`);
    await this.call("POST", "/_matrix/client/v3/keys/signatures/upload", reqs.uploadSignaturesRequest.body);
  }

  /** Send everything the machine wants sent. */
  async flush(): Promise<void> {
    for (let i = 0; i < 5; i++) {
      const reqs = (await this.machine.outgoingRequests()) as RustRequest[];
      if (!reqs.length) return;
      for (const r of reqs) await this.send(r);
    }
  }

  /** One `/sync` (short poll), fed to the machine, then a flush. */
  async sync(timeoutMs = 200): Promise<void> {
    const q = new URLSearchParams({ timeout: String(this.since ? timeoutMs : 0) });
    if (this.since) q.set("since", this.since);
    const res = await this.call("GET", `/_matrix/client/v3/sync?${q}`);
    this.since = res.next_batch as string;
    const toDevice = ((res.to_device as Json | undefined)?.events ?? []) as unknown[];
    const lists = (res.device_lists ?? {}) as { changed?: string[]; left?: string[] };
    const counts = new Map(Object.entries((res.device_one_time_keys_count ?? {}) as Record<string, number>));
    const fallback = new Set((res.device_unused_fallback_key_types ?? []) as string[]);
    await this.machine.receiveSyncChanges(JSON.stringify(toDevice), new wasm.DeviceLists((lists.changed ?? []).map((u) => new wasm.UserId(u)), (lists.left ?? []).map((u) => new wasm.UserId(u))), counts, fallback);
    const joined = ((res.rooms as Json | undefined)?.join ?? {}) as Record<string, { timeline?: { events?: Json[] } }>;
    for (const [roomId, room] of Object.entries(joined)) {
      for (const ev of room.timeline?.events ?? []) await this.onRoomEvent(roomId, ev);
    }
    await this.flush();
  }

  private async onRoomEvent(roomId: string, ev: Json): Promise<void> {
    let event = ev;
    let encrypted = false;
    if (ev.type === "m.room.encrypted") {
      try {
        const dec = await this.machine.decryptRoomEvent(JSON.stringify(ev), new wasm.RoomId(roomId), new wasm.DecryptionSettings(wasm.TrustRequirement.Untrusted));
        const plain = JSON.parse(dec.event) as Json;
        event = { ...ev, type: plain.type, content: plain.content };
        encrypted = true;
      } catch {
        return;
      }
    }
    this.roomEvents.push({ roomId, eventId: String(ev.event_id), sender: String(ev.sender), type: String(event.type), content: (event.content ?? {}) as Json, encrypted, clearRelation: ((ev.content ?? {}) as Json)["m.relates_to"] as Json | undefined });
    const content = (event.content ?? {}) as Json;
    if (String(event.type).startsWith("m.key.verification.") || (event.type === "m.room.message" && content.msgtype === "m.key.verification.request")) {
      await this.machine.receiveVerificationEvent(JSON.stringify({ ...event, room_id: roomId }), new wasm.RoomId(roomId));
    }
  }

  /** Sync until `pred` holds (or throw after `timeoutMs`). */
  async syncUntil(pred: () => boolean | Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await pred())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await this.sync();
    }
  }

  /** Track `userId` and fetch their device keys now. */
  async track(userId: string): Promise<void> {
    await this.machine.updateTrackedUsers([new wasm.UserId(userId)]);
    await this.flush();
  }

  close(): void {
    this.machine.close();
  }
}
