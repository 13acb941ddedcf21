/**
 * The built-in crypto stores, for use in custom stores (subclassing) and in tests. They run inside
 * the crypto worker; the client selects them through `encryptionConf`. A custom store can reuse
 * the built-in batch validation ({@link validateChanges}) and pagination cursor format.
 * @packageDocumentation
 */
export { SqliteCryptoStore } from "./sqlite/SqliteCryptoStore.js";
export { MemoryCryptoStore } from "./memory/MemoryCryptoStore.js";
export { isEmptyBatch, validateBatchForAccount, validateChanges } from "./validateChanges.js";
export { inboundGroupSessionCursor, parseInboundGroupSessionCursor, type InboundSessionKey } from "./inboundCursor.js";
export type * from "../../src/protocol/store.js";
