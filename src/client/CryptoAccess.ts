/**
 * The crypto worker as the client's components see it: whether it is set up, and its API.
 *
 * The client owns the worker host and the account (see `MatrixClient`); components read through
 * this interface at call time, so a worker restarted (or replaced, as the benchmarks do) is picked up.
 * @internal
 */
import type { RemoteCryptoWorkerApi } from "../protocol/api.js";

/** A {@link CryptoAccess} reading `ready` and `api` at call time. @internal */
export function cryptoAccess(ready: () => boolean, api: () => RemoteCryptoWorkerApi): CryptoAccess {
  return {
    get ready() {
      return ready();
    },
    get api() {
      return api();
    },
  };
}

/** What a component needs of the crypto worker. @internal */
export interface CryptoAccess {
  /** Encryption is on, the worker runs and this device's account is loaded (after login). */
  readonly ready: boolean;
  /** The worker's API; throws `EncryptionDisabledError` when not {@link CryptoAccess.ready}. */
  readonly api: RemoteCryptoWorkerApi;
}
