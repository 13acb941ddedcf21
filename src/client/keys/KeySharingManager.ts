/**
 * Room-key sharing among our own devices: the key-forward listener (our requests for missing keys,
 * answered by our other devices) and the key-request listener (their requests, answered by us).
 * @internal
 */
import type { IncomingKeyRequest, IncomingSecretRequest, SyncChangesResult } from "../../protocol/api.js";
import type { CryptoAccess } from "../CryptoAccess.js";
import type { Device } from "../Device.js";
import { emitError, type ClientEventSink } from "../events.js";
import type { KeyClaimManager } from "../send/KeyClaimManager.js";
import type { OutgoingRequestSender } from "../send/OutgoingRequestSender.js";

/** Called when a requested room key arrived from another of our devices (events for it are re-emitted). */
export type KeyForwardListener = (sessionId: string) => void;
/**
 * Called with our own devices that asked for room keys in a sync (device ID → Device, with trust
 * flags) and a function to call with the IDs of the devices to answer. Only those get the keys.
 * `answer` never rejects (so `void answer(ids)` is safe): it resolves once the keys were sent, or
 * once a failure to send them was reported as an `error` event.
 */
export type KeyRequestListener = (devices: Record<string, Device>, answer: (deviceIds: string[]) => Promise<void>) => void;

/** Most key requests kept waiting for the request listener between syncs. */
const MAX_PENDING_KEY_REQUESTS = 1000;

/** What key sharing needs. @internal */
export interface KeySharingDeps {
  crypto: CryptoAccess;
  events: ClientEventSink;
  keyClaims: KeyClaimManager;
  sender: OutgoingRequestSender;
  /** The logged-in user's ID (key sharing runs after login only). */
  userId: () => string;
  /** Known devices of a user, as `Device` objects. */
  getDevices: (userId: string) => Promise<Device[]>;
}

/** The two key-sharing listeners and the requests waiting for them. @internal */
export class KeySharingManager {
  private keyForwardListener: KeyForwardListener | null = null;
  private keyRequestListener: KeyRequestListener | null = null;
  /** Key requests from our own devices, waiting for the request listener: `${deviceId}|${requestId}`. */
  private readonly pendingKeyRequests = new Map<string, IncomingKeyRequest>();

  constructor(private readonly deps: KeySharingDeps) {}

  /** Whether the worker should request missing keys from our other devices (a forward listener is set). */
  get keyRequestsEnabled(): boolean {
    return this.keyForwardListener !== null;
  }

  /** See `MatrixClient.addKeyForwardListener`. */
  async addKeyForwardListener(callback: KeyForwardListener): Promise<void> {
    this.keyForwardListener = callback;
    if (this.deps.crypto.ready) await this.deps.crypto.api.setKeyRequestsEnabled(true);
  }

  /** See `MatrixClient.addKeyRequestListener`. */
  addKeyRequestListener(callback: KeyRequestListener): void {
    this.keyRequestListener = callback;
  }

  /**
   * A sync's key-sharing results: call the forward listener for each forwarded key, then hand the
   * key requests to the request listener. Never rejects (failures are `error` events).
   *
   * Call order: after the sync's timeline events were emitted, before its token is committed.
   */
  async onSyncResult(result: SyncChangesResult): Promise<void> {
    for (const k of result.forwardedKeys) {
      try {
        this.keyForwardListener?.(k.sessionId);
      } catch (err) {
        emitError(this.deps.events, err);
      }
    }
    if (result.keyRequests.length || result.keyRequestCancellations.length || this.pendingKeyRequests.size) {
      await this.handleKeyRequests(result).catch((err: unknown) => emitError(this.deps.events, err));
    }
    if (result.secretRequests.length) await this.answerSecrets(result.secretRequests).catch((err: unknown) => emitError(this.deps.events, err));
  }

  /**
   * Answer `m.secret.request`s from our own devices: the worker shares the cross-signing and
   * backup keys only with our verified devices (Olm-encrypted `m.secret.send`), refusing the rest.
   */
  private async answerSecrets(requests: IncomingSecretRequest[]): Promise<void> {
    const { crypto, keyClaims, sender } = this.deps;
    await keyClaims.run(
      () => crypto.api.prepareKeyForwarding([...new Set(requests.map((r) => r.deviceId))]),
      (claim) => claim,
    );
    for (const req of await crypto.api.answerSecretRequests(requests)) await sender.send(req);
  }

  /** Ask our verified devices for the secrets this device lacks (after one of them verified us). Never rejects. */
  async requestSecrets(): Promise<void> {
    try {
      for (const req of await this.deps.crypto.api.requestSecrets()) await this.deps.sender.send(req);
    } catch (err) {
      emitError(this.deps.events, err);
    }
  }

  private async handleKeyRequests(result: SyncChangesResult): Promise<void> {
    for (const c of result.keyRequestCancellations) this.pendingKeyRequests.delete(c);
    if (!this.keyRequestListener) {
      this.pendingKeyRequests.clear();
      return;
    }
    for (const r of result.keyRequests) {
      if (this.pendingKeyRequests.size >= MAX_PENDING_KEY_REQUESTS) break;
      this.pendingKeyRequests.set(`${r.deviceId}|${r.requestId}`, r);
    }
    if (!this.pendingKeyRequests.size) return;
    const batch = [...this.pendingKeyRequests.values()];
    this.pendingKeyRequests.clear();
    const own = await this.deps.getDevices(this.deps.userId());
    const devices: Record<string, Device> = {};
    for (const r of batch) {
      const d = own.find((x) => x.deviceId === r.deviceId);
      if (d) devices[r.deviceId] = d;
    }
    if (!Object.keys(devices).length) return;
    let answered = false;
    const answer = async (deviceIds: string[]): Promise<void> => {
      if (answered) return;
      answered = true;
      const chosen = batch.filter((r) => deviceIds.includes(r.deviceId) && devices[r.deviceId]);
      if (!chosen.length) return;
      try {
        await this.answer(chosen);
      } catch (err) {
        emitError(this.deps.events, err);
      }
    };
    try {
      this.keyRequestListener(devices, answer);
    } catch (err) {
      emitError(this.deps.events, err);
    }
  }

  /** Send `m.forwarded_room_key`s for the approved requests, claiming Olm sessions first where needed. */
  private async answer(chosen: IncomingKeyRequest[]): Promise<void> {
    const { crypto, keyClaims, sender } = this.deps;
    await keyClaims.run(
      () => crypto.api.prepareKeyForwarding([...new Set(chosen.map((r) => r.deviceId))]),
      (claim) => claim,
    );
    // One forwarded key per device per to-device request: send the rest in further batches.
    let rest = chosen;
    while (rest.length) {
      const seen = new Set<string>();
      const now = rest.filter((r) => (seen.has(r.deviceId) ? false : (seen.add(r.deviceId), true)));
      rest = rest.filter((r) => !now.includes(r));
      for (const req of await crypto.api.answerKeyRequests(now)) await sender.send(req);
    }
  }
}
