/**
 * Interactive key verification (spec: client-server API, "Key verification framework" and "SAS
 * verification"): the state of every flow, to-device or in-room, from the request to `done` or
 * `cancel`. It owns the libolm `SAS` objects (never pickled: a worker restart ends its flows) and
 * decides nothing about trust itself: a flow that passed the MAC check reports the keys it
 * verified, and the engine applies them.
 *
 * Every entry point returns a {@link VerificationOutput}: messages to send (the client sends them,
 * to-device or into the room) and the flows whose view changed.
 * @internal
 */
import type Olm from "@matrix-org/olm";
import { randomBytes } from "node:crypto";
import { InvalidArgumentError } from "../../../src/protocol/errors.js";
import type { Logger } from "../../../src/pure/logger.js";
import type { VerificationFlowView, VerificationPhase, VerificationTransport, VerifiedKeys } from "../../../src/protocol/verification.js";
import { isObj, isStr, type Json } from "../EngineContext.js";
import {
  HASHES,
  KEY_AGREEMENT_PROTOCOLS,
  MAC_METHODS,
  SAS_METHODS,
  calculateMac,
  commitment,
  decimalFromBytes,
  emojiFromBytes,
  macContent,
  macInfo,
  sasInfo,
  type MacMethod,
  type SasMethod,
} from "./sas.js";
import {
  FLOW_TIMEOUT_MS,
  REQUEST_MAX_AGE_MS,
  REQUEST_MAX_FUTURE_MS,
  SAS_V1,
  TYPES,
  VERIFICATION_EVENT_TYPES,
  type IncomingVerificationContext,
  type VerificationIdentity,
  type VerificationKeySource,
  type VerificationOutput,
} from "./protocolTypes.js";

export { SAS_V1, FLOW_TIMEOUT_MS, REQUEST_MAX_AGE_MS, REQUEST_MAX_FUTURE_MS, VERIFICATION_EVENT_TYPES } from "./protocolTypes.js";
export type { VerificationOutput, VerificationKeySource, VerificationIdentity, IncomingVerificationContext } from "./protocolTypes.js";

interface Flow {
  id: string;
  transport: VerificationTransport;
  roomId: string | null;
  otherUserId: string;
  otherDeviceId: string | null;
  /** Devices a to-device request went to (we requested). */
  requestedDevices: string[];
  initiatedByUs: boolean;
  phase: VerificationPhase;
  createdAt: number;
  theirMethods: string[];
  /** The start content that won (canonical JSON of it is committed to), and who sent it. */
  start: Json | null;
  weStarted: boolean;
  sas: Olm.SAS | null;
  theirCommitment: string | null;
  theirKey: string | null;
  macMethod: MacMethod | null;
  sasMethods: SasMethod[];
  sasView: VerificationFlowView["sas"];
  theirMac: Json | null;
  weConfirmed: boolean;
  theyDone: boolean;
  verified: VerifiedKeys | null;
  cancel: VerificationFlowView["cancel"];
}

class Cancel extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** @internal */
export class VerificationMachine {
  private readonly flows = new Map<string, Flow>();

  constructor(
    private readonly olm: { SAS: new () => Olm.SAS },
    private readonly utility: Olm.Utility,
    private readonly me: () => VerificationIdentity,
    private readonly keys: VerificationKeySource,
    private readonly log: Logger,
    private readonly now: () => number,
  ) {}

  /** The current view of a flow, or null. */
  get(flowId: string): VerificationFlowView | null {
    const f = this.flows.get(flowId);
    return f ? view(f) : null;
  }

  /** Views of every flow not yet finished. */
  active(): VerificationFlowView[] {
    return [...this.flows.values()].filter((f) => f.phase !== "done" && f.phase !== "cancelled").map(view);
  }

  /** Request a to-device verification with some of `userId`'s devices (all listed ones receive the request). */
  requestToDevice(userId: string, deviceIds: string[]): VerificationOutput {
    if (!deviceIds.length) throw new InvalidArgumentError(`no device of ${userId} to request verification from`, { userId });
    const id = randomBytes(16).toString("base64url");
    const f = this.newFlow(id, "to_device", null, userId, deviceIds.length === 1 ? deviceIds[0]! : null, true, "requested");
    f.requestedDevices = [...deviceIds];
    const me = this.me();
    const out = emptyOutput();
    out.messages.push({ transport: "to_device", flowId: id, userId, deviceIds: [...deviceIds], type: TYPES.request, content: { from_device: me.deviceId, methods: [SAS_V1], timestamp: this.now(), transaction_id: id } });
    out.updates.push(view(f));
    return out;
  }

  /** The content of an in-room request (an `m.room.message`); the flow exists once {@link roomRequestSent} names its event. */
  roomRequestContent(userId: string): Json {
    const me = this.me();
    return { msgtype: TYPES.request, body: `${me.userId} is requesting to verify your key, but your client does not support in-chat key verification.`, from_device: me.deviceId, methods: [SAS_V1], to: userId };
  }

  /** Our in-room request was sent as `eventId`. */
  roomRequestSent(roomId: string, eventId: string, userId: string): VerificationOutput {
    const f = this.newFlow(eventId, "room", roomId, userId, null, true, "requested");
    return { messages: [], updates: [view(f)] };
  }

  /** Accept a request we received: `ready`. */
  accept(flowId: string): VerificationOutput {
    return this.act(flowId, (f, out) => {
      if (f.initiatedByUs || f.phase !== "requested") throw new Cancel("m.unexpected_message", `cannot accept a flow in phase ${f.phase}`);
      f.phase = "ready";
      this.send(f, out, TYPES.ready, { from_device: this.me().deviceId, methods: [SAS_V1] });
    });
  }

  /** Start SAS in a ready flow (or, deprecated, without a request: never offered here). */
  startSas(flowId: string): VerificationOutput {
    return this.act(flowId, (f, out) => {
      if (f.phase !== "ready") throw new Cancel("m.unexpected_message", `cannot start SAS in phase ${f.phase}`);
      const content: Json = {
        from_device: this.me().deviceId,
        method: SAS_V1,
        key_agreement_protocols: [...KEY_AGREEMENT_PROTOCOLS],
        hashes: [...HASHES],
        message_authentication_codes: [...MAC_METHODS],
        short_authentication_string: [...SAS_METHODS],
      };
      const sent = this.send(f, out, TYPES.start, content);
      f.start = sent;
      f.weStarted = true;
      f.phase = "started";
    });
  }

  /** The user saw matching strings: send our MAC (and check theirs if it already came). */
  confirm(flowId: string): VerificationOutput {
    return this.act(flowId, (f, out) => {
      if (f.phase !== "keys_exchanged") throw new Cancel("m.unexpected_message", `cannot confirm in phase ${f.phase}`);
      f.weConfirmed = true;
      f.phase = "confirmed";
      this.sendMac(f, out);
      if (f.theirMac) this.checkMac(f, f.theirMac, out);
    });
  }

  /** The user saw different strings: cancel with `m.mismatched_sas`. */
  mismatch(flowId: string): VerificationOutput {
    return this.cancelFlow(flowId, "m.mismatched_sas", "The short authentication strings did not match");
  }

  /** Cancel a flow (`m.user` unless another code is given). */
  cancelFlow(flowId: string, code = "m.user", reason = "The user cancelled the verification"): VerificationOutput {
    const out = emptyOutput();
    const f = this.flows.get(flowId);
    if (!f || f.phase === "done" || f.phase === "cancelled") return out;
    this.cancelWith(f, out, code, reason, true);
    return out;
  }

  /** Cancel flows older than {@link FLOW_TIMEOUT_MS} (`m.timeout`) and forget finished ones. */
  tick(): VerificationOutput {
    const out = emptyOutput();
    const now = this.now();
    for (const f of [...this.flows.values()]) {
      const finished = f.phase === "done" || f.phase === "cancelled";
      if (!finished && now - f.createdAt > FLOW_TIMEOUT_MS) this.cancelWith(f, out, "m.timeout", "The verification timed out", true);
      else if (finished && now - f.createdAt > 2 * FLOW_TIMEOUT_MS) this.flows.delete(f.id);
    }
    return out;
  }

  /**
   * An incoming verification event from `sender` (to-device: its type is the event type; in room:
   * an `m.room.message` request or an `m.key.verification.*` event relating to the request).
   * Malformed or unexpected messages cancel the flow with the spec's code; nothing is thrown.
   */
  handle(sender: string, type: string, content: unknown, ctx: IncomingVerificationContext): VerificationOutput {
    const out = emptyOutput();
    if (!isObj(content)) return out;
    const isRequest = type === TYPES.request || (type === "m.room.message" && content.msgtype === TYPES.request);
    if (isRequest) {
      this.onRequest(sender, content, ctx, out);
      return out;
    }
    if (!VERIFICATION_EVENT_TYPES.includes(type)) return out;
    const flowId = ctx.transport === "room" ? relatedEventId(content) : isStr(content.transaction_id) ? content.transaction_id : null;
    if (!flowId) {
      this.log.warn(`ignoring ${type} from ${sender} without a flow ID (reason: malformed)`);
      return out;
    }
    const me = this.me();
    const f = this.flows.get(flowId);
    if (ctx.transport === "room" && sender === me.userId && f && isStr(content.from_device) && content.from_device !== me.deviceId) {
      // Another of our devices answered an in-room request: this device steps aside.
      if (!f.initiatedByUs && (type === TYPES.ready || type === TYPES.cancel)) this.finishAsHandledElsewhere(f, out);
      return out;
    }
    if (ctx.transport === "room" && sender === me.userId) return out; // our own echo
    if (!f) {
      if (type !== TYPES.start && type !== TYPES.cancel && ctx.transport === "to_device" && isStr(content.from_device)) {
        out.messages.push({ transport: "to_device", flowId, userId: sender, deviceIds: [content.from_device], type: TYPES.cancel, content: { transaction_id: flowId, code: "m.unknown_transaction", reason: "Unknown verification flow" } });
      } else if (type === TYPES.start) {
        this.log.info(`ignoring a verification start from ${sender} without a request (deprecated, not supported)`);
      }
      return out;
    }
    if (f.phase === "done" || f.phase === "cancelled") return out;
    if (sender !== f.otherUserId) {
      this.log.warn(`ignoring ${type} for flow ${flowId} from ${sender}, not the other party (reason: user_mismatch)`);
      return out;
    }
    if (f.otherDeviceId && ctx.transport === "to_device" && isStr(content.from_device) && content.from_device !== f.otherDeviceId && type !== TYPES.ready) {
      this.log.warn(`ignoring ${type} for flow ${flowId} from another device (reason: device_mismatch)`);
      return out;
    }
    try {
      switch (type) {
        case TYPES.ready:
          this.onReady(f, content, out);
          break;
        case TYPES.start:
          this.onStart(f, content, out);
          break;
        case TYPES.accept:
          this.onAccept(f, content, out);
          break;
        case TYPES.key:
          this.onKey(f, content, out);
          break;
        case TYPES.mac:
          if (f.phase !== "keys_exchanged" && f.phase !== "confirmed") throw new Cancel("m.unexpected_message", `mac in phase ${f.phase}`);
          if (f.weConfirmed) this.checkMac(f, content, out);
          else f.theirMac = content;
          break;
        case TYPES.done:
          f.theyDone = true;
          if (f.phase === "mac_verified") this.finish(f, out);
          else if (f.phase !== "confirmed" && f.phase !== "keys_exchanged") throw new Cancel("m.unexpected_message", `done in phase ${f.phase}`);
          break;
        case TYPES.cancel:
          f.phase = "cancelled";
          f.cancel = { code: isStr(content.code) ? content.code : "m.unknown", reason: isStr(content.reason) ? content.reason : "", byUs: false };
          this.release(f);
          out.updates.push(view(f));
          break;
      }
    } catch (err) {
      if (!(err instanceof Cancel)) throw err;
      this.cancelWith(f, out, err.code, err.message, true);
    }
    return out;
  }

  private onRequest(sender: string, content: Json, ctx: IncomingVerificationContext, out: VerificationOutput): void {
    const me = this.me();
    if (!isStr(content.from_device) || !Array.isArray(content.methods)) {
      this.log.warn(`ignoring a malformed verification request from ${sender} (reason: malformed)`);
      return;
    }
    if (sender === me.userId && content.from_device === me.deviceId) return;
    let id: string;
    let ts: unknown;
    if (ctx.transport === "room") {
      if (content.to !== me.userId || !ctx.eventId || !ctx.roomId) return;
      id = ctx.eventId;
      ts = ctx.originServerTs;
    } else {
      if (!isStr(content.transaction_id)) return;
      id = content.transaction_id;
      ts = content.timestamp;
    }
    const now = this.now();
    if (typeof ts !== "number" || ts < now - REQUEST_MAX_AGE_MS || ts > now + REQUEST_MAX_FUTURE_MS) {
      this.log.info(`ignoring a verification request from ${sender} with timestamp ${String(ts)} (reason: stale)`);
      return;
    }
    if (this.flows.has(id)) return;
    // The same device starting another flow while one is active: cancel them all (spec).
    const clashing = [...this.flows.values()].filter((f) => f.otherUserId === sender && f.otherDeviceId === content.from_device && f.phase !== "done" && f.phase !== "cancelled");
    const f = this.newFlow(id, ctx.transport, ctx.roomId ?? null, sender, content.from_device, false, "requested");
    f.theirMethods = content.methods.filter(isStr);
    if (clashing.length) {
      for (const c of [f, ...clashing]) this.cancelWith(c, out, "m.unexpected_message", "Another verification with the same device started", true);
      return;
    }
    out.updates.push(view(f));
  }

  private onReady(f: Flow, content: Json, out: VerificationOutput): void {
    if (!f.initiatedByUs || f.phase !== "requested") throw new Cancel("m.unexpected_message", `ready in phase ${f.phase}`);
    if (!isStr(content.from_device) || !Array.isArray(content.methods)) throw new Cancel("m.invalid_message", "malformed ready");
    if (f.transport === "to_device" && f.requestedDevices.length && !f.requestedDevices.includes(content.from_device)) throw new Cancel("m.unexpected_message", "ready from a device we did not ask");
    f.theirMethods = content.methods.filter(isStr);
    f.otherDeviceId = content.from_device;
    if (!f.theirMethods.includes(SAS_V1)) throw new Cancel("m.unknown_method", "no verification method in common");
    f.phase = "ready";
    if (f.transport === "to_device") {
      const others = f.requestedDevices.filter((d) => d !== content.from_device);
      if (others.length) out.messages.push({ transport: "to_device", flowId: f.id, userId: f.otherUserId, deviceIds: others, type: TYPES.cancel, content: { transaction_id: f.id, code: "m.accepted", reason: "Verification accepted by another device" } });
    }
    out.updates.push(view(f));
  }

  private onStart(f: Flow, content: Json, out: VerificationOutput): void {
    if (f.phase !== "ready" && !(f.phase === "started" && f.weStarted && !f.theirCommitment)) throw new Cancel("m.unexpected_message", `start in phase ${f.phase}`);
    if (content.method !== SAS_V1) throw new Cancel("m.unknown_method", `unknown method ${String(content.method)}`);
    if (!isStr(content.from_device)) throw new Cancel("m.invalid_message", "start without from_device");
    if (f.phase === "started" && f.weStarted) {
      // Both sent start: the smaller user ID (or device ID for one user) wins.
      const me = this.me();
      const theirsWins = f.otherUserId === me.userId ? content.from_device < me.deviceId : f.otherUserId < me.userId;
      if (!theirsWins) return;
    }
    f.otherDeviceId ??= content.from_device;
    const kap = pick(KEY_AGREEMENT_PROTOCOLS, content.key_agreement_protocols);
    const hash = pick(HASHES, content.hashes);
    const mac = pick(MAC_METHODS, content.message_authentication_codes);
    const sasMethods = Array.isArray(content.short_authentication_string) ? SAS_METHODS.filter((m) => (content.short_authentication_string as unknown[]).includes(m)) : [];
    if (!kap || !hash || !mac || !sasMethods.length) throw new Cancel("m.unknown_method", "no key agreement, hash, MAC or SAS method in common");
    f.weStarted = false;
    f.start = content;
    f.macMethod = mac;
    f.sasMethods = sasMethods;
    this.release(f);
    f.sas = new this.olm.SAS();
    const accept: Json = {
      method: SAS_V1,
      key_agreement_protocol: kap,
      hash,
      message_authentication_code: mac,
      short_authentication_string: sasMethods,
      commitment: commitment(this.utility, f.sas.get_pubkey(), content),
    };
    f.phase = "started";
    this.send(f, out, TYPES.accept, accept);
    out.updates.push(view(f));
  }

  private onAccept(f: Flow, content: Json, out: VerificationOutput): void {
    if (f.phase !== "started" || !f.weStarted || f.theirCommitment) throw new Cancel("m.unexpected_message", `accept in phase ${f.phase}`);
    const mac = content.message_authentication_code;
    const sasMethods = Array.isArray(content.short_authentication_string) ? SAS_METHODS.filter((m) => (content.short_authentication_string as unknown[]).includes(m)) : [];
    if (!KEY_AGREEMENT_PROTOCOLS.includes(content.key_agreement_protocol as never) || !HASHES.includes(content.hash as never) || !MAC_METHODS.includes(mac as never) || !sasMethods.length) {
      throw new Cancel("m.unknown_method", "the accepted methods are not the ones we offered");
    }
    if (!isStr(content.commitment)) throw new Cancel("m.invalid_message", "accept without commitment");
    f.theirCommitment = content.commitment;
    f.macMethod = mac as MacMethod;
    f.sasMethods = sasMethods;
    f.sas = new this.olm.SAS();
    this.send(f, out, TYPES.key, { key: f.sas.get_pubkey() });
  }

  private onKey(f: Flow, content: Json, out: VerificationOutput): void {
    if (f.phase !== "started" || !f.sas || f.theirKey) throw new Cancel("m.unexpected_message", `key in phase ${f.phase}`);
    if (!isStr(content.key)) throw new Cancel("m.invalid_message", "key without key");
    if (f.weStarted) {
      if (!f.theirCommitment) throw new Cancel("m.unexpected_message", "key before accept");
      if (commitment(this.utility, content.key, f.start!) !== f.theirCommitment) throw new Cancel("m.mismatched_commitment", "The commitment did not match the key");
    }
    f.theirKey = content.key;
    try {
      f.sas.set_their_key(content.key);
    } catch {
      throw new Cancel("m.invalid_message", "invalid ephemeral key");
    }
    if (!f.weStarted) this.send(f, out, TYPES.key, { key: f.sas.get_pubkey() });
    const me = this.me();
    const ours = { userId: me.userId, deviceId: me.deviceId, key: f.sas.get_pubkey() };
    const theirs = { userId: f.otherUserId, deviceId: f.otherDeviceId!, key: content.key };
    const info = sasInfo(f.weStarted ? { starter: ours, accepter: theirs, flowId: f.id } : { starter: theirs, accepter: ours, flowId: f.id });
    const bytes = f.sas.generate_bytes(info, 6);
    f.sasView = { emoji: f.sasMethods.includes("emoji") ? emojiFromBytes(bytes) : null, decimal: f.sasMethods.includes("decimal") ? decimalFromBytes(bytes) : null };
    f.phase = "keys_exchanged";
    out.updates.push(view(f));
  }

  private sendMac(f: Flow, out: VerificationOutput): void {
    const me = this.me();
    const keys: Record<string, string> = { [`ed25519:${me.deviceId}`]: me.ed25519 };
    const master = this.keys.masterKey(me.userId);
    if (master) keys[`ed25519:${master}`] = master;
    const content = macContent(f.sas!, f.macMethod!, me, { userId: f.otherUserId, deviceId: f.otherDeviceId! }, f.id, keys);
    this.send(f, out, TYPES.mac, content);
  }

  private checkMac(f: Flow, content: Json, out: VerificationOutput): void {
    const me = this.me();
    const them = { userId: f.otherUserId, deviceId: f.otherDeviceId! };
    const macs = content.mac;
    if (!isObj(macs) || !isStr(content.keys)) throw new Cancel("m.invalid_message", "malformed mac");
    const ids = Object.keys(macs).sort().join(",");
    if (calculateMac(f.sas!, f.macMethod!, ids, macInfo(them, me, f.id, "KEY_IDS")) !== content.keys) throw new Cancel("m.key_mismatch", "The MAC of the key list did not match");
    const verified: VerifiedKeys = { userId: f.otherUserId, deviceId: null, masterKey: null };
    const master = this.keys.masterKey(f.otherUserId);
    for (const [keyId, mac] of Object.entries(macs)) {
      if (!isStr(mac) || !keyId.startsWith("ed25519:")) throw new Cancel("m.invalid_message", `malformed MAC of ${keyId}`);
      const id = keyId.slice("ed25519:".length);
      let key: string | null = null;
      if (id === them.deviceId) key = this.keys.deviceEd25519(them.userId, id);
      else if (master && id === master) key = master;
      if (key === null) {
        this.log.info(`SAS with ${them.userId}: skipping the MAC of unknown key ${keyId}`);
        continue;
      }
      if (calculateMac(f.sas!, f.macMethod!, key, macInfo(them, me, f.id, keyId)) !== mac) throw new Cancel("m.key_mismatch", `The MAC of ${keyId} did not match`);
      if (id === them.deviceId) verified.deviceId = id;
      else verified.masterKey = key;
    }
    if (!verified.deviceId && !verified.masterKey) throw new Cancel("m.key_mismatch", "None of the keys the other device sent is known to us");
    f.verified = verified;
    f.phase = "mac_verified";
    this.send(f, out, TYPES.done, {});
    if (f.theyDone) this.finish(f, out);
    else out.updates.push(view(f));
  }

  private finish(f: Flow, out: VerificationOutput): void {
    f.phase = "done";
    this.release(f);
    out.updates.push(view(f));
  }

  private finishAsHandledElsewhere(f: Flow, out: VerificationOutput): void {
    f.phase = "cancelled";
    f.cancel = { code: "m.accepted", reason: "Handled by another of our devices", byUs: false };
    this.release(f);
    out.updates.push(view(f));
  }

  private act(flowId: string, fn: (f: Flow, out: VerificationOutput) => void): VerificationOutput {
    const out = emptyOutput();
    const f = this.flows.get(flowId);
    if (!f) throw new InvalidArgumentError(`unknown verification flow ${flowId}`, { flowId });
    if (f.phase === "done" || f.phase === "cancelled") throw new InvalidArgumentError(`verification flow ${flowId} is ${f.phase}`, { flowId, phase: f.phase });
    try {
      fn(f, out);
      if (!out.updates.some((u) => u.flowId === f.id)) out.updates.push(view(f));
    } catch (err) {
      if (!(err instanceof Cancel)) throw err;
      this.cancelWith(f, out, err.code, err.message, true);
    }
    return out;
  }

  private cancelWith(f: Flow, out: VerificationOutput, code: string, reason: string, byUs: boolean): void {
    this.log.info(`verification ${f.id} with ${f.otherUserId} cancelled (reason: ${code}): ${reason}`);
    const targets = f.transport === "to_device" ? (f.otherDeviceId ? [f.otherDeviceId] : f.requestedDevices) : [];
    if (f.transport === "room" || targets.length) this.send(f, out, TYPES.cancel, { code, reason }, targets);
    f.phase = "cancelled";
    f.cancel = { code, reason, byUs };
    this.release(f);
    out.updates.push(view(f));
  }

  /** Queue a message of flow `f`; returns the content as sent (with its flow reference). */
  private send(f: Flow, out: VerificationOutput, type: string, body: Json, deviceIds?: string[]): Json {
    if (f.transport === "room") {
      const content = { ...body, "m.relates_to": { rel_type: "m.reference", event_id: f.id } };
      out.messages.push({ transport: "room", flowId: f.id, roomId: f.roomId!, type, content });
      return content;
    }
    const content = { ...body, transaction_id: f.id };
    const to = deviceIds ?? (f.otherDeviceId ? [f.otherDeviceId] : f.requestedDevices);
    out.messages.push({ transport: "to_device", flowId: f.id, userId: f.otherUserId, deviceIds: to, type, content });
    return content;
  }

  private newFlow(id: string, transport: VerificationTransport, roomId: string | null, otherUserId: string, otherDeviceId: string | null, initiatedByUs: boolean, phase: VerificationPhase): Flow {
    const f: Flow = {
      id,
      transport,
      roomId,
      otherUserId,
      otherDeviceId,
      requestedDevices: [],
      initiatedByUs,
      phase,
      createdAt: this.now(),
      theirMethods: [],
      start: null,
      weStarted: false,
      sas: null,
      theirCommitment: null,
      theirKey: null,
      macMethod: null,
      sasMethods: [],
      sasView: null,
      theirMac: null,
      weConfirmed: false,
      theyDone: false,
      verified: null,
      cancel: null,
    };
    this.flows.set(id, f);
    return f;
  }

  private release(f: Flow): void {
    f.sas?.free();
    f.sas = null;
  }

  /** Free every SAS object (the account is being released). */
  close(): void {
    for (const f of this.flows.values()) this.release(f);
    this.flows.clear();
  }
}

function emptyOutput(): VerificationOutput {
  return { messages: [], updates: [] };
}

function view(f: Flow): VerificationFlowView {
  return {
    flowId: f.id,
    transport: f.transport,
    roomId: f.roomId,
    otherUserId: f.otherUserId,
    otherDeviceId: f.otherDeviceId,
    initiatedByUs: f.initiatedByUs,
    phase: f.phase,
    sas: f.sasView,
    cancel: f.cancel,
    verified: f.verified,
  };
}

function pick<T extends string>(ours: readonly T[], theirs: unknown): T | null {
  if (!Array.isArray(theirs)) return null;
  return ours.find((m) => theirs.includes(m)) ?? null;
}

function relatedEventId(content: Json): string | null {
  const rel = content["m.relates_to"];
  return isObj(rel) && rel.rel_type === "m.reference" && isStr(rel.event_id) ? rel.event_id : null;
}
