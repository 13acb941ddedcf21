/**
 * Shared pieces of the benchmark: workload manifest types, statistics, small helpers.
 * Bench code only — nothing here is part of the SDK.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import Olm from "@matrix-org/olm";

export type Json = Record<string, unknown>;

/** Repository root (bench files compile to dist/bench/, sources live in bench/). */
export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
/** Compiled bench folder (dist/bench). */
export const DIST_BENCH = dirname(fileURLToPath(import.meta.url));

export const BENCH_PICKLE_KEY = "bench pickle key";
export const RECEIVER_USER = "@receiver:bench.local";
export const RECEIVER_DEVICE = "RECEIVERDEV";
export const RECEIVER_PASSWORD = "bench-password";
export const MEGOLM = "m.megolm.v1.aes-sha2";
export const OLM = "m.olm.v1.curve25519-aes-sha2";

let olmReady: Promise<void> | null = null;
/** Initialise libolm once per thread. */
export function initOlm(): Promise<void> {
  olmReady ??= Olm.init();
  return olmReady;
}

/** A sending device (a real libolm account). */
export interface SenderDevice {
  userId: string;
  deviceId: string;
  /** libolm account pickle (key {@link BENCH_PICKLE_KEY}). */
  accountPickle: string;
  ed25519: string;
  curve25519: string;
  /** Signed device keys, as `/keys/query` returns them. */
  deviceKeys: Json;
}

/** One Megolm session of the workload. */
export interface SessionInfo {
  roomId: string;
  sender: number;
  sessionId: string;
  /** Session key exported at index 0 (what `m.room_key` carries). */
  sessionKey: string;
  /** Never shared with the receiver: its events are undecryptable (unknown session). */
  lost: boolean;
}

/** A generated workload, written as `manifest.json` + `batches.jsonl` in its folder. */
export interface Manifest {
  name: string;
  dir: string;
  rooms: string[];
  senders: SenderDevice[];
  sessions: SessionInfo[];
  /** Target plaintext size (bytes of the JSON that is Megolm-encrypted). */
  payloadBytes: number;
  /** Measured averages. */
  plaintextBytesAvg: number;
  eventJsonBytesAvg: number;
  totalEvents: number;
  decryptableEvents: number;
  undecryptableEvents: number;
  /** Events delivered with a message index lower than an index of the same session delivered earlier. */
  outOfOrderEvents: number;
  batchSize: number;
  batches: number;
  /** Seconds spent generating (libolm encryption, serialisation). */
  generationSeconds: number;
}

/** One line of `batches.jsonl`: the timeline events of one sync, per room. */
export type Batch = Record<string, Json[]>;

/** Summary of a list of numbers. */
export interface Summary {
  median: number;
  min: number;
  max: number;
  runs: number[];
}

export function summarize(values: number[]): Summary {
  const v = values.filter((x) => Number.isFinite(x));
  if (!v.length) return { median: NaN, min: NaN, max: NaN, runs: values };
  const s = [...v].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  const median = s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  return { median, min: s[0]!, max: s[s.length - 1]!, runs: values };
}

/** Deterministic PRNG (mulberry32) so workloads have the same shape on every run. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function sdkVersion(): string {
  try {
    return (JSON.parse(readFileSync(join(REPO_ROOT, "package.json"), "utf8")) as { version: string }).version;
  } catch {
    return "unknown";
  }
}

export function libolmVersion(): string {
  try {
    return (JSON.parse(readFileSync(join(REPO_ROOT, "node_modules", "@matrix-org", "olm", "package.json"), "utf8")) as { version: string }).version;
  } catch {
    return "unknown";
  }
}

export const round = (x: number, digits = 1): number => {
  if (!Number.isFinite(x)) return x;
  const f = 10 ** digits;
  return Math.round(x * f) / f;
};

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
