/**
 * What every engine component shares: libolm, the store, the clock, the logger, our identity, the
 * in-flight request registry and the one way to open and commit a {@link Transaction}.
 *
 * Components never hold a second copy of these; each component owns only the in-memory state of
 * its own job. All of them work on the transaction their caller (the facade) opened, so one
 * facade call is still one `saveChanges` batch.
 * @internal
 */
import type Olm from "@matrix-org/olm";
import { randomBytes } from "node:crypto";
import type { AccountInfo, OutgoingRequest } from "../../src/protocol/api.js";
import { EncryptionDisabledError } from "../../src/protocol/errors.js";
import type { CryptoStore } from "../../src/protocol/store.js";
import type { Logger } from "../../src/pure/logger.js";
import { inspectCustom, redactedInspect, Secret, type InspectFn } from "../../src/pure/secret.js";
import { StoreMirrors } from "./StoreMirrors.js";
import { Transaction } from "./Transaction.js";

/** The libolm module. @internal */
export type OlmModule = typeof Olm;
/** A JSON object. @internal */
export type Json = Record<string, unknown>;

/** @internal */
export const isObj = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);
/** @internal */
export const isStr = (v: unknown): v is string => typeof v === "string";

/**
 * What the engine must do when the answer to a request comes back. Bound when the request is
 * built, so the answer is interpreted with the state that produced the request.
 * @internal
 */
export interface InFlightRequest {
  kind: OutgoingRequest["kind"];
  /** keys/query: user → dirty generation at query time; keys/claim: `user|device` → 0. */
  users?: Map<string, number>;
  /** to-device room key share: which devices this chunk covers. */
  share?: { roomId: string; sessionId: string; devices: [string, string][] };
  /** to-device key request: the request ID. */
  keyRequest?: string;
  /** keys/claim made to repair a wedged Olm channel. */
  unwedge?: boolean;
}

/** Dependencies every component gets. @internal */
export interface EngineDeps {
  olm: OlmModule;
  store: CryptoStore;
  pickleKey: string;
  logger: Logger;
  now: () => number;
}

/** @internal */
export class EngineContext {
  readonly olm: OlmModule;
  readonly store: CryptoStore;
  /** The pickle key, out of reach of `util.inspect` and `JSON.stringify`. */
  readonly #pickleKey: Secret;
  readonly log: Logger;
  readonly now: () => number;
  /** Shared libolm utility (signature checks). */
  readonly utility: Olm.Utility;
  /** Requests handed out and not yet answered, by request ID. Cleared when the account is released. */
  readonly inFlight = new Map<string, InFlightRequest>();
  /** In-memory mirror of the tracked users (user → dirty), owned by the device tracker, read by every transaction. */
  tracked = new Map<string, boolean>();
  /**
   * In-memory copies of committed store state (rooms, memberships, devices, outbound sessions,
   * cross-signing settings, the waiting events' count), read by every transaction instead of the
   * store and updated by {@link EngineContext.commit}; cleared with
   * {@link EngineContext.clearMirrors} when an account is loaded.
   */
  readonly mirrors: StoreMirrors;
  private ids: AccountInfo | null = null;
  private readonly commitHooks: ((tx: Transaction) => void)[] = [];

  constructor(deps: EngineDeps) {
    this.olm = deps.olm;
    this.store = deps.store;
    this.#pickleKey = new Secret(deps.pickleKey);
    this.log = deps.logger;
    this.now = deps.now;
    this.utility = new this.olm.Utility();
    this.mirrors = new StoreMirrors(deps.store);
  }

  /** Key that encrypts libolm pickles and our cross-signing seeds at rest (never log it). */
  get pickleKey(): string {
    return this.#pickleKey.reveal();
  }

  /** What `util.inspect` shows: the identity only, never the pickle key. */
  [inspectCustom](_depth: number, options: object, inspect: InspectFn): string {
    return redactedInspect("EngineContext", { identity: this.ids }, options, inspect);
  }

  /** What `JSON.stringify` shows: the identity only. */
  toJSON(): { identity: AccountInfo | null } {
    return { identity: this.ids };
  }

  /** Our user, device and identity keys; throws when no account is loaded. */
  me(): AccountInfo {
    if (!this.ids) throw new EncryptionDisabledError("No account is loaded; log in first.");
    return this.ids;
  }

  /** Whether an account is loaded. */
  get hasAccount(): boolean {
    return this.ids !== null;
  }

  /** Set (or clear) our identity; called by the account component only. */
  setIdentity(ids: AccountInfo | null): void {
    this.ids = ids;
  }

  /** A new write batch over the store, with the tracked-users mirror. */
  newTx(): Transaction {
    return new Transaction(this.store, this.tracked, this.mirrors);
  }

  /** Forget the in-memory copies of store state (another account is loaded): read again on use. */
  clearMirrors(): void {
    this.mirrors.clear();
  }

  /** Commit a batch with one `saveChanges`, then let components update their caches from it. */
  async commit(tx: Transaction): Promise<void> {
    const changes = tx.toChanges();
    if (changes) {
      await this.store.saveChanges(changes);
      this.mirrors.apply(changes);
    }
    tx.applyTracked(this.tracked);
    for (const hook of this.commitHooks) hook(tx);
  }

  /** Register a cache update run after every successful commit. */
  onCommit(hook: (tx: Transaction) => void): void {
    this.commitHooks.push(hook);
  }

  /** Register a request handed out; its answer is matched by ID. */
  addInFlight(req: InFlightRequest): string {
    const id = this.newId();
    this.inFlight.set(id, req);
    return id;
  }

  /** A random request/transaction ID. */
  newId(): string {
    return randomBytes(9).toString("base64url");
  }

  /** The `txnId` of a to-device request. */
  txnId(id: string): string {
    return `${this.me().deviceId}.${id}`;
  }
}
