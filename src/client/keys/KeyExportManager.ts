/**
 * Room-key export and import in the Matrix key-export file format (PBKDF2 and AES run in the
 * worker); events the imported keys decrypt are emitted again.
 * @internal
 */
import { resolve as resolvePath } from "node:path";
import type { CryptoAccess } from "../CryptoAccess.js";
import { emitError, type ClientEventSink } from "../events.js";
import type { TimelineEmitter } from "../timeline.js";

/** A caller's progress callback. @internal */
export type ProgressCallback = (done: number, total: number) => void;

/** Key-export files, both ways. @internal */
export class KeyExportManager {
  constructor(
    private readonly crypto: CryptoAccess,
    private readonly events: ClientEventSink,
    private readonly timeline: TimelineEmitter,
  ) {}

  /** See `MatrixClient.exportKeys`. */
  async exportKeys(path: string, passphrase: string, opts: { rounds?: number; onProgress?: ProgressCallback }): Promise<{ exported: number }> {
    const exported = await this.crypto.api.exportKeysToFile(resolvePath(path), passphrase, opts.rounds, this.progressReporter(opts.onProgress));
    return { exported };
  }

  /** See `MatrixClient.importKeys`. */
  async importKeys(path: string, passphrase: string, opts: { onProgress?: ProgressCallback }): Promise<{ total: number; imported: number; skipped: number }> {
    const r = await this.crypto.api.importKeysFromFile(resolvePath(path), passphrase, this.progressReporter(opts.onProgress));
    for (const batch of r.redecrypted) for (const ev of batch.results) if (ev.ok) this.timeline.emitDecrypted(batch.roomId, { event_id: ev.eventId }, ev, true);
    return { total: r.total, imported: r.imported, skipped: r.skipped };
  }

  /**
   * Wrap a caller's progress callback for the worker, which waits for each report so that every
   * report arrives before the result. The wrapper returns at once (never the caller's promise, which
   * might wait for the worker and deadlock), and a throwing callback becomes an `error` event.
   */
  private progressReporter(onProgress: ProgressCallback | undefined): ProgressCallback | undefined {
    if (!onProgress) return undefined;
    return (done, total) => {
      try {
        onProgress(done, total);
      } catch (err) {
        emitError(this.events, err);
      }
    };
  }
}
