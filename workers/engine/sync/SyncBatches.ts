/**
 * One sync through the engine: its crypto changes committed at once (room state, device lists,
 * key counts, to-device, events waiting for keys that just arrived), then its timelines decrypted
 * into the sync's open batch, which is committed only with the sync token, naming it. A batch is
 * held in memory only: a restarted engine has none and refuses the commit
 * ({@link SyncBatchUnknownError}), so the client processes the sync again.
 * @internal
 */
import type { SyncChangesInput, SyncChangesOptions, SyncChangesResult } from "../../../src/protocol/api.js";
import type { PoolSession } from "../../../src/protocol/pool.js";
import { closeSync, fsyncSync, openSync } from "node:fs";
import { InvalidArgumentError, StoreError, SyncBatchUnknownError } from "../../../src/protocol/errors.js";
import type { AccountKeys } from "../account/AccountKeys.js";
import { isObj, isStr, type EngineContext } from "../EngineContext.js";
import type { KeySharing } from "../gossiping/KeySharing.js";
import type { DeviceTracker } from "../identities/DeviceTracker.js";
import type { InboundSessions } from "../megolm/InboundSessions.js";
import { UNCONFIRMED_REDECRYPT, type PendingBudget, type RoomDecryptor, type RoomResults } from "../megolm/RoomDecryptor.js";
import type { RoomState } from "../rooms/RoomState.js";
import type { Transaction } from "../Transaction.js";
import type { ToDeviceHandler } from "./ToDeviceHandler.js";

/** An empty sync result (`batchId`: the batch it opened, if any). @internal */
export function emptySyncResult(batchId = ""): SyncChangesResult {
  return { batchId, toDevice: [], toDeviceFailures: [], roomKeys: [], redecrypted: [], encryptedRooms: [], keyRequests: [], keyRequestCancellations: [], forwardedKeys: [], secretRequests: [], secretsReceived: [] };
}

/** The components a sync goes through. @internal */
export interface SyncParts {
  rooms: RoomState;
  devices: DeviceTracker;
  account: AccountKeys;
  toDevice: ToDeviceHandler;
  decryptor: RoomDecryptor;
  keySharing: KeySharing;
  inbound: InboundSessions;
}

/** @internal */
export class SyncBatches {
  /** The sync in progress: its timeline side effects, committed with its token by {@link SyncBatches.commit}. */
  private batch: { id: string; tx: Transaction } | null = null;

  constructor(
    private readonly ctx: EngineContext,
    private readonly parts: SyncParts,
    private readonly write: <T>(fn: (tx: Transaction) => T | Promise<T>) => Promise<T>,
  ) {}

  /** The open batch's transaction, if a sync is in progress (a key import decrypts what it kept). */
  get openTx(): Transaction | null {
    return this.batch?.tx ?? null;
  }

  /** Forget the open batch (the engine released its state). */
  drop(): void {
    this.batch = null;
  }

  /**
   * Process the crypto-relevant parts of one sync (committed now) and open the sync's batch for
   * its timeline side effects, committed with the token (`batchId` of the result names it). An
   * earlier batch not committed is dropped: its sync is processed again.
   */
  async receive(input: SyncChangesInput, opts: SyncChangesOptions): Promise<SyncChangesResult> {
    this.ctx.me();
    this.batch = null;
    const { rooms, devices, account, toDevice, decryptor, keySharing } = this.parts;
    const batch = { id: this.ctx.newId(), tx: this.ctx.newTx() };
    const result = emptySyncResult(batch.id);
    await this.write((tx) => {
      // 1. room state: encryption, history visibility, members
      for (const room of Array.isArray(input.rooms) ? input.rooms : []) rooms.applySyncRoom(tx, room, result);
      // 2. device lists
      devices.onDeviceLists(tx, input.deviceLists);
      // 3. one-time keys and fallback key
      // (a sync requested before our last upload was answered may count keys from before it: the
      // upload answer's count is newer, and acting on the old one would publish a second batch)
      if (opts.keyCountsStale) this.ctx.log.debug("ignoring the key counts of a sync requested before our last upload was answered");
      else account.onSyncCounts(input.oneTimeKeyCounts, input.unusedFallbackKeyTypes);
      // 4. to-device
      for (const ev of Array.isArray(input.toDevice) ? input.toDevice : []) toDevice.handle(tx, ev, result);
      // 5. events waiting for the sessions that just arrived (deleted only with the sync token,
      // after the client emitted them)
      decryptor.redecryptPending(tx, result, batch.tx, true);
      keySharing.saveQueued(tx);
    });
    this.batch = batch;
    if (opts.exportSessions) result.poolSessions = this.parts.inbound.pickled(this.ctx.newTx(), result.roomKeys);
    return result;
  }

  /**
   * Decrypt the encrypted timeline events of every room of one sync in one call. The side effects
   * (replay records, events kept for later, key requests) are staged in the batch {@link SyncBatches.receive}
   * opened: one transaction per sync instead of one per room, one waiting-events budget, key
   * requests written once. Events may come deciphered by the decrypt pool; with `exported`, the
   * sessions this call deciphered with itself are added to it (see `RoomDecryptor.decryptBatch`).
   * Throws {@link SyncBatchUnknownError} when no batch is open (the engine restarted since).
   */
  decrypt(rooms: { roomId: string; events: unknown[] }[], exported?: Map<string, PoolSession>): RoomResults[] {
    this.ctx.me();
    const tx = this.open().tx;
    const out: RoomResults[] = [];
    const budget: PendingBudget = { left: null };
    for (const r of Array.isArray(rooms) ? rooms : []) {
      if (!isObj(r) || !isStr(r.roomId) || !Array.isArray(r.events)) continue;
      out.push({ roomId: r.roomId, results: this.parts.decryptor.decryptBatch(tx, r.roomId, r.events, true, budget, exported) });
    }
    this.parts.keySharing.saveQueued(tx);
    return out;
  }

  /**
   * Commit the sync token with exactly the batch `batchId` once the sync is fully handled. Throws
   * {@link SyncBatchUnknownError}, committing nothing, when that batch is not the open one (the
   * engine restarted and lost it): the client processes the sync again, which recreates it.
   */
  async commit(token: string, batchId: string, syncFirst: string[] = []): Promise<void> {
    if (!isStr(token)) throw new InvalidArgumentError("sync token must be a string");
    if (!isStr(batchId)) throw new InvalidArgumentError("sync batch ID must be a string");
    if (!Array.isArray(syncFirst) || !syncFirst.every(isStr)) throw new InvalidArgumentError("the files to sync first must be paths");
    const { tx } = this.open(batchId);
    // The client state store's writes of this sync reach the disk before the token does.
    for (const path of syncFirst) syncFile(path);
    this.batch = null;
    // Key-request state may have moved on since the timelines were decrypted: write the current one.
    this.parts.keySharing.saveIfChanged(tx);
    if (tx.getValue(UNCONFIRMED_REDECRYPT)) tx.setValue(UNCONFIRMED_REDECRYPT, null);
    tx.syncToken = token;
    await this.ctx.commit(tx);
  }

  /** The open sync batch, or {@link SyncBatchUnknownError} (none, or another one: the engine restarted). */
  private open(batchId?: string): { id: string; tx: Transaction } {
    const batch = this.batch;
    if (!batch || (batchId !== undefined && batch.id !== batchId)) {
      throw new SyncBatchUnknownError(batch ? "the sync batch to commit is not the one in progress" : "no sync batch is in progress (the crypto worker restarted)", batchId !== undefined ? { batchId } : {});
    }
    return batch;
  }
}

/**
 * Sync one file to disk (see `CryptoWorkerApi.commitSyncToken`'s `syncFirst`). A file that is gone
 * is not an error (SQLite removes a WAL file only after checkpointing it into its synced database);
 * any other failure is `StoreError`.
 */
function syncFile(path: string): void {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return;
    throw new StoreError(`Cannot open ${path} to sync it before the sync token: ${e instanceof Error ? e.message : String(e)}`, { path });
  }
  try {
    fsyncSync(fd);
  } catch (e) {
    throw new StoreError(`Cannot sync ${path} before the sync token: ${e instanceof Error ? e.message : String(e)}`, { path });
  } finally {
    closeSync(fd);
  }
}
