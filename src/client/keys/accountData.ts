/**
 * The user's global account data (`/user/{userId}/account_data/{type}`), where secret storage
 * keeps its key descriptions and encrypted secrets.
 * @internal
 */
import { MatrixHttpError } from "../../protocol/errors.js";
import { p, type HttpClient } from "../../http/HttpClient.js";
import type { Json } from "../json.js";

/** One user's account data. @internal */
export class AccountData {
  constructor(
    private readonly http: HttpClient,
    private readonly userId: () => string,
  ) {}

  /** The content of `type`, or null when the account has none. */
  async get(type: string): Promise<Json | null> {
    try {
      return await this.http.request<Json>("GET", p`/_matrix/client/v3/user/${this.userId()}/account_data/${type}`);
    } catch (err) {
      if (err instanceof MatrixHttpError && err.status === 404) return null;
      throw err;
    }
  }

  /** Set the content of `type`. */
  async set(type: string, content: Json): Promise<void> {
    await this.http.request("PUT", p`/_matrix/client/v3/user/${this.userId()}/account_data/${type}`, { body: content });
  }

  /** The default secret storage key: its ID and description, or null when the account has none. */
  async defaultSecretStorageKey(): Promise<{ keyId: string; keyDescription: Json } | null> {
    const def = await this.get("m.secret_storage.default_key");
    const keyId = def && typeof def.key === "string" ? def.key : null;
    if (!keyId) return null;
    const keyDescription = await this.get(`m.secret_storage.key.${keyId}`);
    return keyDescription ? { keyId, keyDescription } : null;
  }
}
