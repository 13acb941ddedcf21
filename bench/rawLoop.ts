/**
 * The raw libolm baseline: `InboundGroupSession.decrypt` in a loop on this thread over a
 * workload's events, in the order the client decrypts them (batch by batch, room by room), with
 * sessions created fresh from the workload's keys. Used on its own (measure.ts "raw" mode, a fresh
 * process) and paired with a client run: right before and right after it in the same process, so
 * the host's drift between minutes hits both alike (see paired.ts).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import Olm from "@matrix-org/olm";
import { initOlm, type Batch, type Json, type Manifest, type SessionInfo } from "./common.js";

/** A workload's Megolm ciphertexts in delivery order, and the keys to decrypt them. */
export interface RawWork {
  /** [session ID, ciphertext] per timeline event, in the order the client decrypts them. */
  events: [string, string][];
  sessions: SessionInfo[];
}

/** One timed pass over the events. */
export interface RawPass {
  /** Events decrypted (those of sessions the receiver never gets are skipped). */
  events: number;
  seconds: number;
  eps: number;
}

/** Read a workload folder (manifest.json + batches.jsonl) into {@link RawWork}. */
export function loadRawWork(manifestDir: string): RawWork {
  const manifest = JSON.parse(readFileSync(join(manifestDir, "manifest.json"), "utf8")) as Manifest;
  const events: [string, string][] = [];
  const lines = readFileSync(join(manifestDir, "batches.jsonl"), "utf8").split("\n");
  for (const l of lines) {
    if (!l.length) continue;
    for (const evs of Object.values(JSON.parse(l) as Batch)) {
      for (const ev of evs) {
        const c = ev.content as Json;
        events.push([c.session_id as string, c.ciphertext as string]);
      }
    }
  }
  return { events, sessions: manifest.sessions };
}

function makeSessions(work: RawWork): Map<string, Olm.InboundGroupSession> {
  const m = new Map<string, Olm.InboundGroupSession>();
  for (const s of work.sessions) {
    if (s.lost) continue;
    const ig = new Olm.InboundGroupSession();
    ig.create(s.sessionKey);
    m.set(s.sessionId, ig);
  }
  return m;
}

function freeSessions(m: Map<string, Olm.InboundGroupSession>): void {
  for (const s of m.values()) s.free();
}

let sink = 0;

/**
 * Decrypt every event once with fresh sessions (created untimed) and time it; with `parse`, also
 * `JSON.parse` each plaintext. `warmup` events are decrypted first, untimed, with their own
 * sessions (a decrypted session's ratchet has moved on), so V8 has tiered libolm's wasm up.
 */
export async function rawPass(work: RawWork, opts: { parse?: boolean; warmup?: number } = {}): Promise<RawPass> {
  await initOlm();
  const warm = opts.warmup ?? 1000;
  if (warm > 0) {
    const w = makeSessions(work);
    for (const [sid, ct] of work.events.slice(0, warm)) w.get(sid)?.decrypt(ct);
    freeSessions(w);
  }
  const sessions = makeSessions(work);
  let n = 0;
  const t0 = performance.now();
  if (opts.parse) {
    for (const [sid, ct] of work.events) {
      const s = sessions.get(sid);
      if (!s) continue;
      sink += (JSON.parse(s.decrypt(ct).plaintext) as { type: string }).type.length;
      n++;
    }
  } else {
    for (const [sid, ct] of work.events) {
      const s = sessions.get(sid);
      if (!s) continue;
      s.decrypt(ct);
      n++;
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  freeSessions(sessions);
  if (sink < 0) console.log(sink);
  return { events: n, seconds, eps: n / seconds };
}
