/**
 * Builds the crypto store a {@link StoreConfig} names (built-in or a user module) and opens it,
 * inside the worker.
 * @internal
 * @packageDocumentation
 */
import { isAbsolute } from "node:path";
import { pathToFileURL } from "node:url";
import type { CryptoStore, StoreConfig } from "../../src/protocol/store.js";
import { InvalidArgumentError, StoreError } from "../../src/protocol/errors.js";
import type { Logger } from "../../src/pure/logger.js";
import { SqliteCryptoStore } from "./sqlite/SqliteCryptoStore.js";
import { MemoryCryptoStore } from "./memory/MemoryCryptoStore.js";

/**
 * Build and open the store named by `config`, inside the worker. A user store is named by module
 * specifier (or absolute path) and export name; the export is a class constructed with `options`.
 * @internal
 */
export async function openStore(config: StoreConfig, logger: Logger): Promise<CryptoStore> {
  let store: CryptoStore;
  switch (config.kind) {
    case "sqlite":
      store = new SqliteCryptoStore(config.path, logger, config.nativeBinding === undefined ? {} : { nativeBinding: config.nativeBinding });
      break;
    case "memory":
      store = new MemoryCryptoStore();
      break;
    case "module": {
      const spec = isAbsolute(config.module) ? pathToFileURL(config.module).href : config.module;
      let mod: Record<string, unknown>;
      try {
        mod = (await import(spec)) as Record<string, unknown>;
      } catch (err) {
        throw new StoreError(`could not import store module ${config.module}: ${String(err)}`);
      }
      const Ctor = mod[config.export];
      if (typeof Ctor !== "function") throw new InvalidArgumentError(`store module ${config.module} has no export ${config.export}`);
      store = new (Ctor as new (options: unknown, logger: Logger) => CryptoStore)(config.options, logger);
      break;
    }
    default:
      throw new InvalidArgumentError("unknown store kind");
  }
  await store.open();
  logger.info(`crypto store: ${store.location}`);
  return store;
}
