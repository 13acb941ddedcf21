/**
 * The built-in crypto stores, for use in custom stores (subclassing) and in tests. They run inside
 * the crypto worker; the client selects them through `encryptionConf`.
 * @packageDocumentation
 */
export { SqliteCryptoStore } from "./SqliteCryptoStore.js";
export { MemoryCryptoStore } from "./MemoryCryptoStore.js";
export type * from "../../src/protocol/store.js";
