/**
 * Cross-signing and secret storage: create, restore and use this user's cross-signing identity
 * (the keys live in the worker; this moves account data and signature uploads), and other users'
 * identities.
 * @internal
 */
import type { UserIdentityInfo } from "../../protocol/api.js";
import { InvalidArgumentError, MatrixHttpError } from "../../protocol/errors.js";
import type { HttpClient } from "../../http/HttpClient.js";
import { AccountData } from "./accountData.js";
import type { CryptoAccess } from "../CryptoAccess.js";
import { isObj, type Json } from "../json.js";
import { inspectCustom, REDACTED, redactedInspect, Secret, type InspectFn } from "../../pure/secret.js";

/**
 * What `MatrixClient.bootstrapCrossSigning` returns. The recovery key is a getter (so
 * `const { recoveryKey } = await client.bootstrapCrossSigning(…)` works) and is redacted by
 * `util.inspect`, `console.log` and `JSON.stringify` of this object.
 */
export class CrossSigningBootstrapResult {
  readonly #recoveryKey: Secret;

  /** @param recoveryKey - The new secret-storage recovery key. */
  constructor(recoveryKey: string) {
    this.#recoveryKey = new Secret(recoveryKey);
  }

  /** The new recovery key (groups of four characters): give it to the user, never log it. */
  get recoveryKey(): string {
    return this.#recoveryKey.reveal();
  }

  /** What `JSON.stringify` shows: the recovery key redacted. */
  toJSON(): { recoveryKey: string } {
    return { recoveryKey: REDACTED };
  }

  /** What `util.inspect` shows: the recovery key redacted. */
  [inspectCustom](_depth: number, options: object, inspect: InspectFn): string {
    return redactedInspect("CrossSigningBootstrapResult", this.toJSON(), options, inspect);
  }
}

/** The server (or the client, for a missing password) refused a request: it certainly changed nothing. */
function isRefusal(err: unknown): boolean {
  return err instanceof InvalidArgumentError || (err instanceof MatrixHttpError && err.status >= 400 && err.status < 500);
}

/** What cross-signing needs. @internal */
export interface CrossSigningDeps {
  http: HttpClient;
  crypto: CryptoAccess;
  /** The logged-in user's ID (cross-signing runs after login only). */
  userId: () => string;
  /** Run the outgoing-requests loop (keys/query after a refresh). */
  triggerOutgoing: () => Promise<void>;
}

/** This user's cross-signing identity and other users'. @internal */
export class CrossSigningManager {
  private readonly accountData: AccountData;

  constructor(private readonly deps: CrossSigningDeps) {
    this.accountData = new AccountData(deps.http, deps.userId);
  }

  private async uploadSignatures(body: Json): Promise<void> {
    const res = await this.deps.http.request<Json>("POST", "/_matrix/client/v3/keys/signatures/upload", { body });
    if (isObj(res.failures) && Object.keys(res.failures).length) {
      throw new MatrixHttpError(200, "M_INVALID_SIGNATURE", `signature upload failed: ${JSON.stringify(res.failures)}`);
    }
  }

  /**
   * See `MatrixClient.bootstrapCrossSigning`. The worker prepares the keys (kept pending); they
   * become our identity only after the server accepted `/keys/device_signing/upload`. When the
   * server refuses that upload the pending keys are discarded; on any failure our identity is
   * exactly as it was. A crash (or a lost answer) after the server accepted but before the commit
   * is repaired by the next `/keys/query` (the worker adopts pending keys the server publishes)
   * or by bootstrapping again.
   */
  async bootstrap(opts: { password?: string | undefined; passphrase?: string | undefined }): Promise<CrossSigningBootstrapResult> {
    const { crypto } = this.deps;
    const r = await crypto.api.prepareCrossSigning(opts.passphrase ? { passphrase: opts.passphrase } : {});
    try {
      await this.uploadDeviceSigningKeys(r.deviceSigningUpload, opts.password);
    } catch (err) {
      // A refusal is definitive: forget the keys. After an ambiguous failure (network, 5xx) the
      // server may have stored them, so they stay pending: the next /keys/query adopts them if
      // they were published, and they are never trusted otherwise. A failed discard is as
      // harmless, so the upload's error is the one reported.
      if (isRefusal(err)) await crypto.api.discardCrossSigning().catch(() => undefined);
      throw err;
    }
    await crypto.api.commitCrossSigning(r.masterKey);
    await this.uploadSignatures(r.signatureUpload);
    const ss = r.secretStorage;
    await this.accountData.set(`m.secret_storage.key.${ss.keyId}`, ss.keyDescription);
    for (const [name, content] of Object.entries(ss.secrets)) await this.accountData.set(name, content);
    await this.accountData.set("m.secret_storage.default_key", { key: ss.keyId });
    await this.refreshUserKeys(this.deps.userId());
    return new CrossSigningBootstrapResult(r.recoveryKey);
  }

  /** `/keys/device_signing/upload`, with user-interactive auth by password when the server asks for it. */
  private async uploadDeviceSigningKeys(body: Json, password: string | undefined): Promise<void> {
    const path = "/_matrix/client/v3/keys/device_signing/upload";
    try {
      await this.deps.http.request("POST", path, { body });
    } catch (err) {
      if (!(err instanceof MatrixHttpError) || err.status !== 401) throw err;
      const session = typeof err.details.session === "string" ? err.details.session : undefined;
      if (!password) throw new InvalidArgumentError("the server wants the account password to upload cross-signing keys");
      await this.deps.http.request("POST", path, {
        body: { ...body, auth: { type: "m.login.password", identifier: { type: "m.id.user", user: this.deps.userId() }, password, session } },
      });
    }
  }

  /** See `MatrixClient.restoreCrossSigning`. */
  async restore(secret: { recoveryKey: string } | { passphrase: string }): Promise<void> {
    const ssKey = await this.accountData.defaultSecretStorageKey();
    if (!ssKey) throw new InvalidArgumentError("this account has no default secret storage key (or it is not described)");
    const { keyId, keyDescription } = ssKey;
    const secrets: Record<string, unknown> = {};
    for (const name of ["m.cross_signing.master", "m.cross_signing.self_signing", "m.cross_signing.user_signing"]) secrets[name] = await this.accountData.get(name);
    await this.refreshUserKeys(this.deps.userId());
    const r = await this.deps.crypto.api.restoreCrossSigning({ keyDescription, keyId, secrets, ...secret });
    await this.uploadSignatures(r.signatureUpload);
    await this.refreshUserKeys(this.deps.userId());
  }

  /** See `MatrixClient.verifyUser`. */
  async verifyUser(userId: string): Promise<void> {
    const r = await this.deps.crypto.api.verifyUser(userId);
    await this.uploadSignatures(r.signatureUpload);
  }

  /** See `MatrixClient.getUserIdentity`. */
  getUserIdentity(userId: string): Promise<UserIdentityInfo> {
    return this.deps.crypto.api.getUserIdentity(userId);
  }

  /** See `MatrixClient.acknowledgeIdentityChange`. */
  async acknowledgeIdentityChange(userId: string): Promise<void> {
    await this.deps.crypto.api.acknowledgeIdentityChange(userId);
  }

  /** Fetch a user's devices and identity from the server again (marks them dirty, runs the outgoing loop). */
  async refreshUserKeys(userId: string): Promise<void> {
    await this.deps.crypto.api.refreshUsers([userId]);
    await this.deps.triggerOutgoing();
  }
}
