/**
 * The engine's in-memory copies of committed store state, read by every {@link Transaction}
 * instead of the store, so that an encrypted send into a room whose key is already shared (and a
 * sync touching many rooms) reads (almost) nothing from the store.
 *
 * The coherence rule, the same for every copy: an entry is read from the store on first use, then
 * kept exact from the batches the engine commits ({@link StoreMirrors.apply}, run by
 * `EngineContext.commit` right after `saveChanges` returned). The store changes only through
 * those batches (`CryptoStore` docs), so the copies are exact for any store. A transaction reads
 * its own writes first, then the copies. A failed commit changes neither the store nor the copies.
 * Everything is forgotten when an account is loaded ({@link StoreMirrors.clear}); a restarted
 * worker starts empty. Each copy is bounded: past its cap it forgets and reads again.
 *
 * Copies hold frozen records: code that mutated a record read out (which the store's "records
 * are copies" rule used to allow) throws instead of corrupting the copy.
 * @internal
 */
import type { CryptoStore, StoreChanges } from "../../src/protocol/store.js";
import { DeviceMirror } from "./identities/DeviceMirror.js";
import { ValueMirror } from "./identities/ValueMirror.js";
import { OutboundMirror } from "./megolm/OutboundMirror.js";
import { PendingMirror } from "./megolm/PendingMirror.js";
import { MemberMirror } from "./rooms/MemberMirror.js";
import { RoomMirror } from "./rooms/RoomMirror.js";

/** @internal */
export class StoreMirrors {
  /** Room records and "full member list loaded" flags. */
  readonly rooms: RoomMirror;
  /** The count of events waiting for their keys. */
  readonly pending: PendingMirror;
  /** Outbound Megolm session records (with the devices each reached), by room. */
  readonly outbound: OutboundMirror;
  /** Room memberships, by room. */
  readonly members: MemberMirror;
  /** Device records (keys and local trust flags), by user. */
  readonly devices: DeviceMirror;
  /** Per-user cross-signing settings (published identity, pinned master key, our verification). */
  readonly values: ValueMirror;

  constructor(store: CryptoStore) {
    this.rooms = new RoomMirror(store);
    this.pending = new PendingMirror(store);
    this.outbound = new OutboundMirror(store);
    this.members = new MemberMirror(store);
    this.devices = new DeviceMirror(store);
    this.values = new ValueMirror(store);
  }

  /** Take in a batch that was just committed. */
  apply(changes: StoreChanges): void {
    this.rooms.apply(changes);
    this.pending.apply(changes);
    this.outbound.apply(changes);
    this.members.apply(changes);
    this.devices.apply(changes);
    this.values.apply(changes);
  }

  /** Forget everything (another account is loaded): read again on use. */
  clear(): void {
    this.rooms.clear();
    this.pending.clear();
    this.outbound.clear();
    this.members.clear();
    this.devices.clear();
    this.values.clear();
  }
}
