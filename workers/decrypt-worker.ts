/**
 * Entry point of a decrypt worker of the decrypt pool (see `src/protocol/pool.ts`): libolm only,
 * no store, no trust. It holds the inbound sessions the crypto worker handed it (unpickled, LRU)
 * and deciphers events of those sessions with the same checks as the crypto worker
 * (`engine/megolm/decipher.ts`); anything else is left to the crypto worker (empty cells). Posts `ready`
 * once libolm is up. Prints nothing and logs nothing of what it holds.
 */
import { readlinkSync } from "node:fs";
import { getPriority, setPriority } from "node:os";
import { parentPort, workerData } from "node:worker_threads";
import * as Comlink from "comlink/dist/esm/comlink.mjs";
import nodeEndpoint from "comlink/dist/esm/node-adapter.mjs";
import Olm from "@matrix-org/olm";
import { serializeError } from "../src/protocol/errors.js";
import { DECRYPT_POOL_PROTOCOL_VERSION, POOL_CELLS, type DecryptWorkerApi, type DecryptWorkerOptions, type PoolCipherRoom, type PoolDecipheredCells, type PoolSession } from "../src/protocol/pool.js";
import { MAX_CIPHERTEXT_LENGTH } from "./engine/DecryptFailure.js";
import { decipherRoomEvent } from "./engine/megolm/decipher.js";

/** The facade's shape as seen by the host: every method may be awaited. @internal */
export type DecryptWorkerFacade = { [K in keyof DecryptWorkerApi]: (...args: Parameters<DecryptWorkerApi[K]>) => Promise<ReturnType<DecryptWorkerApi[K]>> };

const key = (roomId: string, senderKey: string, sessionId: string): string => `${roomId}\u0000${senderKey}\u0000${sessionId}`;

/**
 * Give this thread alone a lower priority (Linux: a thread's ID from `/proc/thread-self`,
 * `setpriority` on it); never a higher one (a process already niced further keeps its niceness).
 * Best effort: elsewhere, or when refused, the worker runs at the process's priority.
 */
function lowerPriority(niceness: number): void {
  if (!(niceness > 0) || process.platform !== "linux") return;
  try {
    const tid = Number(readlinkSync("/proc/thread-self").split("/").pop());
    const target = Math.min(19, Math.floor(niceness));
    if (Number.isSafeInteger(tid) && tid > 0 && getPriority(tid) < target) setPriority(tid, target);
  } catch {
    // no /proc, or not allowed: the process's priority
  }
}

async function main(): Promise<void> {
  if (!parentPort) throw new Error("decrypt-worker must run in a worker thread");
  const port = parentPort;
  const opts = workerData as DecryptWorkerOptions;
  lowerPriority(opts.niceness);
  await Olm.init();
  const sessions = new Map<string, { session: Olm.InboundGroupSession; firstKnownIndex: number }>();

  const add = (s: PoolSession): void => {
    const session = new Olm.InboundGroupSession();
    try {
      session.unpickle(opts.pickleKey, s.pickle);
    } catch {
      // Not ours to judge: the crypto worker deciphers this session's events itself.
      session.free();
      return;
    }
    const k = key(s.roomId, s.senderKey, s.sessionId);
    sessions.get(k)?.session.free();
    sessions.delete(k);
    sessions.set(k, { session, firstKnownIndex: s.firstKnownIndex });
    while (sessions.size > opts.cacheSize) {
      const oldest = sessions.keys().next().value as string;
      sessions.get(oldest)!.session.free();
      sessions.delete(oldest);
    }
  };

  /** One event's cells into `out`: its plaintext, index and type, or "", -1, "" (left to the crypto worker). */
  const decipherOne = (roomId: string, senderKey: unknown, sessionId: unknown, ciphertext: unknown, out: PoolDecipheredCells): void => {
    const held = typeof senderKey === "string" && typeof sessionId === "string" && typeof ciphertext === "string" && ciphertext && ciphertext.length <= MAX_CIPHERTEXT_LENGTH ? sessions.get(key(roomId, senderKey, sessionId)) : undefined;
    if (held) {
      try {
        const d = decipherRoomEvent(held.session, roomId, ciphertext as string, held.firstKnownIndex);
        out.push(d.plaintext, d.messageIndex, d.type);
        return;
      } catch {
        // the crypto worker tries again and reports the reason
      }
    }
    out.push("", -1, "");
  };

  const api: DecryptWorkerApi = {
    addSessions: (list) => {
      for (const s of Array.isArray(list) ? list : []) add(s);
    },
    decipher: (rooms) =>
      (Array.isArray(rooms) ? rooms : []).map((r) => {
        const out: PoolDecipheredCells = [];
        const cells = Array.isArray(r.cells) ? r.cells : [];
        for (let i = 0; i + POOL_CELLS <= cells.length; i += POOL_CELLS) decipherOne(r.roomId, cells[i], cells[i + 1], cells[i + 2], out);
        return out;
      }),
  };
  const facade: DecryptWorkerFacade = Object.freeze({
    addSessions: async (list: PoolSession[]) => api.addSessions(list),
    decipher: async (rooms: PoolCipherRoom[]) => api.decipher(rooms),
  });
  Comlink.expose(facade, nodeEndpoint(port as unknown as Parameters<typeof nodeEndpoint>[0]));
  port.postMessage({ __sdk: "ready", protocolVersion: DECRYPT_POOL_PROTOCOL_VERSION });
}

void main().catch((err: unknown) => {
  parentPort?.postMessage({ __sdk: "init-error", error: serializeError(err) });
});
