/**
 * The engine's copy of the committed per-user cross-signing settings (a user's published
 * identity, the master key we pinned and a detected change of it, the master key we verified;
 * `CrossSigningStore`), read by the recipient policy of every send (see `StoreMirrors` for the
 * coherence rule). A committed value gives the key's whole value, so every batch updates the
 * copy. Other settings (our sealed private keys among them) are read from the store as before.
 * @internal
 */
import type { CryptoStore, StoreChanges } from "../../../src/protocol/store.js";

/** The setting keys kept in memory, by prefix (the per-user ones of `CrossSigningStore`). */
const PREFIXES = ["xsign:identity:", "xsign:pin:", "xsign:verified:"] as const;
/** Keys remembered, at most (values and absences); beyond, everything is read again. */
const MAX_KEYS = 30_000;

const mirrored = (key: string): boolean => PREFIXES.some((p) => key.startsWith(p));

/** @internal */
export class ValueMirror {
  /** Key → committed value; null: not set. */
  private readonly byKey = new Map<string, string | null>();

  constructor(private readonly store: CryptoStore) {}

  /** The committed value of a setting (a mirrored one read from the store on first use), or null. */
  get(key: string): string | null {
    if (!mirrored(key)) return this.store.getValue(key);
    const known = this.byKey.get(key);
    if (known !== undefined) return known;
    const v = this.store.getValue(key);
    this.set(key, v);
    return v;
  }

  /** Take in a batch that was just committed. */
  apply(changes: StoreChanges): void {
    if (!changes.values) return;
    for (const [k, v] of Object.entries(changes.values)) if (mirrored(k)) this.set(k, v);
  }

  /** Forget everything. */
  clear(): void {
    this.byKey.clear();
  }

  private set(key: string, v: string | null): void {
    if (!this.byKey.has(key) && this.byKey.size >= MAX_KEYS) this.byKey.clear();
    this.byKey.set(key, v);
  }
}
