/**
 * One interactive verification (SAS emoji/decimal) with another device or user, as the
 * application drives it. The state lives in the crypto worker; this object mirrors the worker's
 * view and forwards the user's decisions.
 * @packageDocumentation
 */
import { EventEmitter } from "eventemitter3";
import { VerificationCancelledError } from "../../protocol/errors.js";
import type { SasEmoji, VerificationAction, VerificationFlowView, VerificationPhase, VerificationTransport, VerifiedKeys } from "../../protocol/verification.js";

/** The short authentication strings of a flow, and the two answers the user can give. */
export interface SasVerifier {
  /** The 7 emoji, when the other side supports emoji. */
  readonly emoji: SasEmoji[] | null;
  /** The 3 numbers (1000–9191). */
  readonly decimal: [number, number, number] | null;
  /** The strings match on both screens: send our MAC. The flow ends `done` once both MACs check out. */
  confirm(): Promise<void>;
  /** The strings differ: cancel with `m.mismatched_sas`. */
  mismatch(): Promise<void>;
}

/** What a request needs from the client. @internal */
export interface VerificationRequestHost {
  act(flowId: string, action: VerificationAction): Promise<void>;
}

/** Events of a {@link VerificationRequest}. */
export interface VerificationRequestEvents {
  /** The flow moved on (see {@link VerificationRequest.phase}). */
  change: () => void;
}

/**
 * An interactive verification. Incoming ones arrive as the client's `verification.request` event;
 * outgoing ones come from `client.requestVerification` or `room.requestVerification`.
 *
 * @example
 * client.on("verification.request", async (req) => {
 *   await req.accept();
 *   const sas = await req.waitForSas();
 *   console.log(sas.emoji?.map((e) => `${e.symbol} ${e.name}`).join("  "));
 *   if (await operatorSaysTheyMatch()) await sas.confirm(); else await sas.mismatch();
 *   await req.done;
 * });
 */
export class VerificationRequest extends EventEmitter<VerificationRequestEvents> {
  private v: VerificationFlowView;
  private settle!: { resolve: (v: VerifiedKeys) => void; reject: (e: Error) => void };
  /** Resolves with what was verified when the flow is `done`; rejects with {@link VerificationCancelledError}. */
  readonly done: Promise<VerifiedKeys>;

  /** @internal */
  constructor(
    view: VerificationFlowView,
    private readonly host: VerificationRequestHost,
  ) {
    super();
    this.v = view;
    this.done = new Promise<VerifiedKeys>((resolve, reject) => {
      this.settle = { resolve, reject };
    });
    // Applications that only listen to `change` must not get an unhandled rejection.
    this.done.catch(() => undefined);
  }

  /** The flow ID (to-device `transaction_id`, or the in-room request's event ID). */
  get flowId(): string {
    return this.v.flowId;
  }
  /** `to_device` or `room`. */
  get transport(): VerificationTransport {
    return this.v.transport;
  }
  /** The room of an in-room verification. */
  get roomId(): string | null {
    return this.v.roomId;
  }
  /** The user being verified. */
  get otherUserId(): string {
    return this.v.otherUserId;
  }
  /** Their device, once known. */
  get otherDeviceId(): string | null {
    return this.v.otherDeviceId;
  }
  /** Whether we sent the request. */
  get initiatedByUs(): boolean {
    return this.v.initiatedByUs;
  }
  /** Where the flow stands. */
  get phase(): VerificationPhase {
    return this.v.phase;
  }
  /** The cancellation, when `phase` is `cancelled`. */
  get cancelInfo(): { code: string; reason: string; byUs: boolean } | null {
    return this.v.cancel;
  }
  /** The short authentication strings once the keys were exchanged (phase `keys_exchanged` and later), else null. */
  get sas(): SasVerifier | null {
    const s = this.v.sas;
    if (!s) return null;
    return { emoji: s.emoji, decimal: s.decimal, confirm: () => this.host.act(this.flowId, "confirm"), mismatch: () => this.host.act(this.flowId, "mismatch") };
  }

  /** Accept an incoming request (sends `m.key.verification.ready`). */
  accept(): Promise<void> {
    return this.host.act(this.flowId, "accept");
  }
  /** Start SAS in a ready flow (either side may; if both do, the spec's tie-break picks one). */
  startSas(): Promise<void> {
    return this.host.act(this.flowId, "start_sas");
  }
  /** Cancel (`m.user`). */
  cancel(): Promise<void> {
    return this.host.act(this.flowId, "cancel");
  }

  /** Resolves once `pred` holds for this request (checked now and at every change); rejects if the flow ends first. */
  waitFor(pred: (r: VerificationRequest) => boolean): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        if (pred(this)) {
          resolve();
          return true;
        }
        if (this.phase === "cancelled" || this.phase === "done") {
          reject(this.phase === "cancelled" ? this.cancelledError() : new VerificationCancelledError("m.unexpected_message", "the flow ended", false));
          return true;
        }
        return false;
      };
      if (check()) return;
      const on = (): void => {
        if (check()) this.off("change", on);
      };
      this.on("change", on);
    });
  }

  /** Resolves with the short authentication strings once they can be shown. */
  async waitForSas(): Promise<SasVerifier> {
    await this.waitFor((r) => r.sas !== null);
    return this.sas!;
  }

  /** @internal A new view from the worker. */
  update(view: VerificationFlowView): void {
    this.v = view;
    if (view.phase === "done" && view.verified) this.settle.resolve(view.verified);
    else if (view.phase === "cancelled") this.settle.reject(this.cancelledError());
    this.emit("change");
  }

  private cancelledError(): VerificationCancelledError {
    const c = this.v.cancel ?? { code: "m.unknown", reason: "", byUs: false };
    return new VerificationCancelledError(c.code, c.reason, c.byUs);
  }
}
