/**
 * The engine's copy of the committed device records, by user (see `StoreMirrors` for the
 * coherence rule): a user's devices are read from the store on first use, then every committed
 * device of that user (a new one, new keys or signatures, a trust flag, `deleted`) is applied to
 * the copy. Devices of users not read yet are left to the store.
 * @internal
 */
import type { CryptoStore, DeviceRecord, StoreChanges } from "../../../src/protocol/store.js";

/** Devices remembered, at most, over all users; beyond, everything is read again. */
const MAX_DEVICES = 100_000;

const frozen = (d: DeviceRecord): DeviceRecord => Object.freeze({ ...d, algorithms: Object.freeze([...d.algorithms]) as string[] });

/** @internal */
export class DeviceMirror {
  /** User ID → device ID → committed record (frozen). */
  private readonly byUser = new Map<string, Map<string, DeviceRecord>>();
  private size = 0;

  constructor(private readonly store: CryptoStore) {}

  /** The user's committed devices (read from the store on first use). Frozen records, any order. */
  get(userId: string): Iterable<DeviceRecord> {
    const known = this.byUser.get(userId);
    if (known) return known.values();
    const rows = this.store.getUserDevices(userId);
    if (rows.length > MAX_DEVICES) return rows;
    if (this.size + rows.length > MAX_DEVICES) this.clear();
    const m = new Map(rows.map((d) => [d.deviceId, frozen(d)]));
    this.byUser.set(userId, m);
    this.size += m.size;
    return m.values();
  }

  /** Take in a batch that was just committed. */
  apply(changes: StoreChanges): void {
    for (const d of changes.devices ?? []) {
      const m = this.byUser.get(d.userId);
      if (!m) continue;
      if (!m.has(d.deviceId)) this.size++;
      m.set(d.deviceId, frozen(d));
    }
    if (this.size > MAX_DEVICES) this.clear();
  }

  /** Forget everything. */
  clear(): void {
    this.byUser.clear();
    this.size = 0;
  }
}
