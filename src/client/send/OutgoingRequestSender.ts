/**
 * Sends one request the engine asked for (keys/upload, keys/query, keys/claim, to-device) over HTTP
 * and reports the answer, or the failure, back to the engine.
 *
 * It takes no lock itself: the callers hold the lock the request kind needs (DESIGN §3), i.e.
 * `KeyClaimManager` for keys/claim, `RoomSendQueue` for a room's key shares, and the
 * `OutgoingRequestsLoop`'s single flight for what `outgoingRequests()` returned.
 * @internal
 */
import type { OutgoingRequest } from "../../protocol/api.js";
import { MatrixHttpError } from "../../protocol/errors.js";
import { p, type HttpClient } from "../../http/HttpClient.js";
import type { CryptoAccess } from "../CryptoAccess.js";
import type { ClientEventSink } from "../events.js";

/** Sends engine requests and reports the results (`markRequestAsSent` / `markRequestAsFailed`). @internal */
export class OutgoingRequestSender {
  private answeredUploads = 0;

  /**
   * How many `/keys/upload` requests the server answered so far. A sync requested before the
   * latest answer may carry key counts from before that upload (see `SyncChangesOptions`).
   */
  get keyUploadsAnswered(): number {
    return this.answeredUploads;
  }

  constructor(
    private readonly http: HttpClient,
    private readonly crypto: CryptoAccess,
    private readonly events: ClientEventSink,
  ) {}

  /**
   * Send `r` and report the response to the engine, emitting `user.identityChanged` for the
   * identities the response changed. On failure the engine is told (so it can retry later) and the
   * error is rethrown.
   *
   * Locking rule: the caller holds the lock of the request's kind (see the file comment).
   */
  async send(r: OutgoingRequest): Promise<void> {
    try {
      const res = await this.request(r);
      if (r.kind === "keys_upload") this.answeredUploads++;
      const { identityChanges } = await this.crypto.api.markRequestAsSent(r.id, r.kind, JSON.stringify(res ?? {}));
      for (const u of identityChanges) this.events.emit("user.identityChanged", u);
    } catch (err) {
      if (err instanceof MatrixHttpError) {
        await this.crypto.api.markRequestAsFailed(r.id, r.kind, err.errcode ?? null, err.message);
      } else {
        await this.crypto.api.markRequestAsFailed(r.id, r.kind, null, err instanceof Error ? err.message : String(err)).catch(() => undefined);
      }
      throw err;
    }
  }

  private request(r: OutgoingRequest): Promise<unknown> {
    const body: unknown = JSON.parse(r.body);
    switch (r.kind) {
      case "keys_upload":
        return this.http.request("POST", "/_matrix/client/v3/keys/upload", { body });
      case "keys_query":
        return this.http.request("POST", "/_matrix/client/v3/keys/query", { body });
      case "keys_claim":
        return this.http.request("POST", "/_matrix/client/v3/keys/claim", { body });
      case "to_device":
        return this.http.request("PUT", p`/_matrix/client/v3/sendToDevice/${r.eventType}/${r.txnId}`, { body });
    }
  }
}
