/**
 * The contract of the decrypt pool (`decryptWorkers` ≥ 2): Megolm decrypt workers next to the
 * crypto worker, sharded by room. The crypto worker stays the one owner of every write and every
 * decision: it hands the pool the pickled sessions it decrypted with, the pool deciphers the next
 * events of those sessions (libolm only), and the crypto worker takes each deciphered event's
 * message index for replay detection, the session's provenance for the label, and commits with
 * the sync token as ever. An event the pool cannot decipher (unknown session, any failure) goes to
 * the crypto worker as if there were no pool.
 * @internal
 */
import type { PoolSession } from "./api.js";

export type { PoolSession } from "./api.js";

/** Version of the decrypt worker's messages; the host checks it at start-up. @internal */
export const DECRYPT_POOL_PROTOCOL_VERSION = 2;


/** Cells per event in {@link PoolCipherRoom.cells} and {@link PoolDecipheredCells}. @internal */
export const POOL_CELLS = 3;

/**
 * One room's events as a decrypt worker takes them: per event, in order, its `sender_key`,
 * `session_id` and `ciphertext` ({@link POOL_CELLS} strings, flat; "" where the event is not a
 * Megolm event with those three strings). Flat strings cost both threads far less to clone than
 * event objects, and the worker needs nothing else. @internal
 */
export interface PoolCipherRoom {
  roomId: string;
  cells: string[];
}

/**
 * One room's answer, per event of its {@link PoolCipherRoom} in order: the plaintext JSON ("":
 * not deciphered, left to the crypto worker), the message index and the decrypted event type
 * ({@link POOL_CELLS} cells, flat). @internal
 */
export type PoolDecipheredCells = (string | number)[];

/** What the pool deciphered of one event: the plaintext for the application, the index and type for the crypto worker. @internal */
export interface PoolDeciphered {
  plaintextJson: string;
  messageIndex: number;
  type: string;
}

/** Start-up data of a decrypt worker. @internal */
export interface DecryptWorkerOptions {
  /** Key that decrypts the pickles (the crypto worker's). */
  pickleKey: string;
  /** Sessions kept unpickled (LRU). */
  cacheSize: number;
  /**
   * Niceness the worker's thread takes (0–19; 0: as the process), where the platform lets one
   * thread have its own (Linux): under CPU contention the main thread and the crypto worker run
   * first, the decrypt workers take what is left.
   */
  niceness: number;
}

/** A decrypt worker's facade. Calls are independent; none writes anything durable. @internal */
export interface DecryptWorkerApi {
  /** Keep these sessions (replacing any of the same key). */
  addSessions(sessions: PoolSession[]): void;
  /** Decipher each event whose session is held: per room, {@link POOL_CELLS} cells per event, an empty plaintext where the crypto worker must do it. */
  decipher(rooms: PoolCipherRoom[]): PoolDecipheredCells[];
}
