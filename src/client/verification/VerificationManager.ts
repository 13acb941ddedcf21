/**
 * Interactive verification on the main thread: routes verification events (to-device, and in-room
 * events of the timeline) to the crypto worker, sends the messages the worker asks for, uploads the
 * cross-signing signatures of a finished SAS, keeps one {@link VerificationRequest} per flow, and
 * times flows out (the worker's clock; checked every 30 s while flows are active).
 * @internal
 */
import { p, type HttpClient } from "../../http/HttpClient.js";
import type { Logger } from "../../pure/logger.js";
import type { VerificationAction, VerificationActionResult, VerificationFlowView } from "../../protocol/verification.js";
import type { CryptoAccess } from "../CryptoAccess.js";
import { emitError, type ClientEventSink, type MatrixClientEvents, type RoomEvent, type ToDeviceEvent } from "../events.js";
import { VerificationRequest } from "./VerificationRequest.js";

const TICK_MS = 30_000;

/** What the manager needs. @internal */
export interface VerificationManagerDeps {
  http: HttpClient;
  crypto: CryptoAccess;
  events: ClientEventSink;
  log: Logger;
  /** Send an event into a room (encrypted in encrypted rooms); resolves with its event ID. */
  sendRoomEvent: (roomId: string, type: string, content: Record<string, unknown>) => Promise<string>;
  newTxnId: () => string;
  /** A flow with `otherUserId` ended verified (ours with another of our devices: ask it for our secrets). */
  onVerified?: (otherUserId: string) => void;
}

/** @internal */
export class VerificationManager {
  private readonly requests = new Map<string, VerificationRequest>();
  private timer: NodeJS.Timeout | null = null;
  /** One worker round trip at a time, in arrival order (the flow's messages must be sent in order). */
  private chain: Promise<unknown> = Promise.resolve();

  constructor(private readonly deps: VerificationManagerDeps) {}

  /** A client event was emitted: verification events are handed to the worker (other events are ignored). */
  observe<K extends keyof MatrixClientEvents>(name: K, args: Parameters<MatrixClientEvents[K]>): void {
    if (!this.deps.crypto.ready) return;
    if (name === "toDevice") {
      const e = args[0] as ToDeviceEvent;
      if (e.type.startsWith("m.key.verification.")) this.enqueue(() => this.deps.crypto.api.receiveVerificationEvent(e.sender, e.type, JSON.stringify(e.content), { transport: "to_device" }));
    } else if (name === "room.event") {
      const e = args[0] as RoomEvent;
      const isRequest = e.type === "m.room.message" && e.content.msgtype === "m.key.verification.request";
      if (isRequest || e.type.startsWith("m.key.verification.")) {
        this.enqueue(() => this.deps.crypto.api.receiveVerificationEvent(e.sender, e.type, JSON.stringify(e.content), { transport: "room", roomId: e.roomId, eventId: e.eventId, originServerTs: e.originServerTs }));
      }
    }
  }

  /** Request a to-device verification with one device (or all known devices) of `userId`. */
  requestToDevice(userId: string, deviceId?: string): Promise<VerificationRequest> {
    return this.run(async () => this.settle(await this.deps.crypto.api.requestVerification(userId, deviceId ? [deviceId] : null)));
  }

  /** Request an in-room verification of `userId` in `roomId` (a DM with them). */
  requestInRoom(roomId: string, userId: string): Promise<VerificationRequest> {
    return this.run(async () => {
      const content = await this.deps.crypto.api.roomVerificationRequestContent(userId);
      const eventId = await this.deps.sendRoomEvent(roomId, "m.room.message", content);
      return this.settle(await this.deps.crypto.api.roomVerificationRequestSent(roomId, eventId, userId));
    });
  }

  /** The request of a flow, if the client saw it. */
  get(flowId: string): VerificationRequest | undefined {
    return this.requests.get(flowId);
  }

  /** Stop the timeout timer (the client is closing). */
  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private readonly host = {
    act: async (flowId: string, action: VerificationAction): Promise<void> => {
      await this.run(async () => void (await this.apply(await this.deps.crypto.api.verificationAction(flowId, action))));
    },
  };

  /** Run `fn` after every earlier verification step (a flow's messages leave in the order the worker produced them). */
  private run<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.chain.then(fn);
    this.chain = next.then(
      () => undefined,
      () => undefined,
    );
    return next;
  }

  private enqueue(fn: () => Promise<VerificationActionResult>): void {
    void this.run(async () => {
      try {
        await this.apply(await fn());
      } catch (err) {
        this.deps.log.warn(`verification event failed: ${err instanceof Error ? err.message : String(err)}`);
        emitError(this.deps.events, err);
      }
    });
  }

  /** Apply a result and return the request of its first update. */
  private async settle(r: VerificationActionResult): Promise<VerificationRequest> {
    const requests = await this.apply(r);
    return requests[0]!;
  }

  /**
   * Send what the worker asked for (in order), upload the signatures of finished flows, then update
   * (or create and announce) the requests.
   */
  private async apply(r: VerificationActionResult): Promise<VerificationRequest[]> {
    for (const m of r.messages) {
      if (m.transport === "to_device") {
        const messages = { [m.userId]: Object.fromEntries(m.deviceIds.map((d) => [d, m.content])) };
        await this.deps.http.request("PUT", p`/_matrix/client/v3/sendToDevice/${m.type}/${this.deps.newTxnId()}`, { body: { messages } });
      } else {
        await this.deps.sendRoomEvent(m.roomId, m.type, m.content);
      }
    }
    if (r.signatureUpload) {
      try {
        await this.deps.http.request("POST", "/_matrix/client/v3/keys/signatures/upload", { body: r.signatureUpload });
      } catch (err) {
        this.deps.log.warn(`uploading the signatures of a verification failed: ${err instanceof Error ? err.message : String(err)}`);
        emitError(this.deps.events, err);
      }
    }
    const out: VerificationRequest[] = [];
    for (const v of r.updates) out.push(this.update(v));
    return out;
  }

  private update(v: VerificationFlowView): VerificationRequest {
    let req = this.requests.get(v.flowId);
    if (!req) {
      req = new VerificationRequest(v, this.host);
      this.requests.set(v.flowId, req);
      this.armTimer();
      if (!v.initiatedByUs && v.phase === "requested") this.deps.events.emit("verification.request", req);
      return req;
    }
    const wasDone = req.phase === "done";
    req.update(v);
    if (v.phase === "done" && !wasDone) this.deps.onVerified?.(v.otherUserId);
    if (v.phase === "done" || v.phase === "cancelled") {
      const flowId = v.flowId;
      // Keep finished requests a while so late lookups still find them.
      setTimeout(() => this.requests.delete(flowId), 10 * 60_000).unref();
    }
    return req;
  }

  private armTimer(): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      const active = [...this.requests.values()].some((r) => r.phase !== "done" && r.phase !== "cancelled");
      if (!active) {
        this.close();
        return;
      }
      if (this.deps.crypto.ready) this.enqueue(() => this.deps.crypto.api.verificationTick());
    }, TICK_MS);
    this.timer.unref();
  }
}
