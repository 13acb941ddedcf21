/**
 * HTTP layer of the client (main thread): JSON requests to the homeserver with authentication,
 * typed errors, timeouts and retries with backoff.
 *
 * Nothing here logs access tokens, query strings or request bodies: a log line carries the
 * method, the path without its query string, the status and the duration only.
 *
 * @packageDocumentation
 */

import { randomBytes } from "node:crypto";
import type { Readable } from "node:stream";
import { Pool, type Dispatcher } from "undici";
import { ClientClosedError, InvalidArgumentError, MatrixHttpError, NetworkError } from "../protocol/errors.js";
import { computeBackoff, sleep } from "../util/backoff.js";
import { noopLogger, type Logger } from "../pure/logger.js";
import { inspectCustom, redactedInspect, Secret, type InspectFn } from "../pure/secret.js";

/** Longest server-requested delay (`retry_after_ms` / `Retry-After`) that is honoured: 5 minutes. */
export const MAX_RETRY_AFTER_MS = 5 * 60_000;

/** HTTP statuses that are retried (besides 429). */
const RETRYABLE_5XX: ReadonlySet<number> = new Set([500, 502, 503, 504]);

/** undici error codes that are programming errors, never network trouble: never wrapped nor retried. */
const NON_NETWORK_UNDICI_CODES: ReadonlySet<string> = new Set([
  "UND_ERR_INVALID_ARG",
  "UND_ERR_INVALID_RETURN_VALUE",
  "UND_ERR_NOT_SUPPORTED",
  "UND_MOCK_ERR_MOCK_NOT_MATCHED",
]);

/** Options of the {@link HttpClient} constructor. */
export interface HttpClientOptions {
  /** Where to log requests (method, path without query, status, duration). Default: no logging. */
  logger?: Logger | undefined;
  /**
   * undici dispatcher to send requests through (for example a `MockAgent` in tests, or a proxy
   * agent). When given, the client does not close it in {@link HttpClient.close}. Default: a
   * `Pool` for the origin of `baseUrl`, owned and closed by the client.
   */
  dispatcher?: Dispatcher | undefined;
  /** Access token sent as `Authorization: Bearer …`. Can be changed with {@link HttpClient.setAccessToken}. */
  accessToken?: string | undefined;
  /** Time limit of one attempt (headers and body), in milliseconds; 0 disables it. Default 60 000. */
  requestTimeoutMs?: number | undefined;
  /** Retries after the first attempt (so at most `maxRetries + 1` attempts). Default 5. */
  maxRetries?: number | undefined;
  /** Backoff ceiling of the first retry, in milliseconds. Default 500. */
  baseBackoffMs?: number | undefined;
  /** Upper bound of the backoff ceiling, in milliseconds. Default 30 000. */
  maxBackoffMs?: number | undefined;
  /** Uniform random source in `[0, 1)` used for jitter. Default `Math.random`. */
  random?: (() => number) | undefined;
}

/** Query-string parameters; `undefined` values are left out, others are stringified. */
export type QueryParams = Record<string, string | number | boolean | undefined>;

/** Options of one {@link HttpClient.request} call. */
export interface RequestOptions {
  /** Query-string parameters (never logged). */
  query?: QueryParams | undefined;
  /** JSON-serialisable body, sent as `application/json`. Ignored when `rawBody` is given. */
  body?: unknown;
  /** Raw body bytes (for example a media upload). */
  rawBody?: Uint8Array | undefined;
  /** A streamed body (large uploads): called once per attempt for a fresh stream. Takes precedence over `rawBody`. */
  streamBody?: (() => Readable) | undefined;
  /** Content-Length of `streamBody` (servers such as Synapse require it for uploads). */
  contentLength?: number | undefined;
  /** Content type of `rawBody` (default `application/octet-stream`) or of the JSON body (default `application/json`). */
  contentType?: string | undefined;
  /** Time limit of one attempt, in milliseconds (default: the client's `requestTimeoutMs`). Long-poll `/sync` passes a larger one. */
  timeoutMs?: number | undefined;
  /** Retry network errors, 429 and 500/502/503/504. Default true. */
  retry?: boolean | undefined;
  /** Cancels the request and any pending backoff wait; the promise rejects with `signal.reason`. */
  signal?: AbortSignal | undefined;
  /** Send the access token. Default true. */
  auth?: boolean | undefined;
}

/** Reason used internally to abort an attempt that ran past its time limit. */
class AttemptTimeout extends Error {
  constructor(readonly timeoutMs: number) {
    super(`Request timed out after ${timeoutMs} ms`);
  }
}

let txnCounter = 0;
const txnProcessTag = randomBytes(3).toString("hex");

/**
 * A transaction ID that is unique within this process and, with overwhelming probability, across
 * processes and restarts: time (base 36), a process-wide counter and random bytes.
 * Only `[0-9a-z.]` characters, so it is safe in a URL path.
 *
 * @returns A fresh transaction ID such as `m1abcdef.3.9f2c01.5e7a93d1`.
 */
export function makeTxnId(): string {
  txnCounter = (txnCounter + 1) % Number.MAX_SAFE_INTEGER;
  return `m${Date.now().toString(36)}.${txnCounter.toString(36)}.${txnProcessTag}.${randomBytes(4).toString("hex")}`;
}

/**
 * Tagged template for request paths: every interpolated value is passed through
 * `encodeURIComponent`, the literal parts are kept as written.
 *
 * @example
 * ```ts
 * p`/_matrix/client/v3/rooms/${roomId}/send/${type}/${txnId}`
 * // → "/_matrix/client/v3/rooms/!abc%3Aexample.org/send/m.room.message/m1x.1.ab.cd"
 * ```
 * @param strings - Literal parts of the template.
 * @param values - Interpolated values (each becomes one encoded path segment or part of one).
 * @returns The encoded path.
 */
export function p(strings: TemplateStringsArray, ...values: ReadonlyArray<string | number | boolean>): string {
  let out = strings[0] ?? "";
  for (let i = 0; i < values.length; i++) {
    out += encodeURIComponent(String(values[i])) + (strings[i + 1] ?? "");
  }
  return out;
}

/** `value` as a finite number ≥ 0, else `fallback`. */
function nonNegative(value: number | undefined, fallback: number): number {
  return value !== undefined && Number.isFinite(value) && value >= 0 ? value : fallback;
}

/** First value of a header that may be repeated. */
function headerValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/** Parse `Retry-After` (delta-seconds or HTTP-date) into milliseconds. */
function parseRetryAfterHeader(v: string | undefined, now: number = Date.now()): number | undefined {
  if (v === undefined) return undefined;
  const s = v.trim();
  if (s === "") return undefined;
  if (/^\d+(\.\d+)?$/.test(s)) return Math.round(Number(s) * 1000);
  const t = Date.parse(s);
  if (Number.isNaN(t)) return undefined;
  return Math.max(0, t - now);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function asRetryMs(v: unknown): number | undefined {
  return typeof v === "number" && Number.isFinite(v) && v >= 0 ? v : undefined;
}

/**
 * Build a {@link MatrixHttpError} from a non-2xx answer. `errcode`, `error` and `retry_after_ms`
 * are read from the top level of the body and, for servers that nest them, from an `error` object;
 * the `Retry-After` header (seconds or HTTP date) is the fallback for the delay.
 */
function httpErrorFromResponse(
  status: number,
  text: string,
  headers: Record<string, string | string[] | undefined>,
  method: string,
  logPath: string,
): MatrixHttpError {
  let parsed: unknown;
  try {
    parsed = text === "" ? undefined : JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  let errcode: string | undefined;
  let message: string | undefined;
  let retryAfterMs: number | undefined;
  if (isRecord(parsed)) {
    const nested = isRecord(parsed.error) ? parsed.error : undefined;
    if (typeof parsed.errcode === "string") errcode = parsed.errcode;
    else if (nested && typeof nested.errcode === "string") errcode = nested.errcode;
    if (typeof parsed.error === "string") message = parsed.error;
    else if (nested && typeof nested.error === "string") message = nested.error;
    else if (nested && typeof nested.message === "string") message = nested.message;
    retryAfterMs = asRetryMs(parsed.retry_after_ms) ?? (nested ? asRetryMs(nested.retry_after_ms) : undefined);
  }
  retryAfterMs ??= parseRetryAfterHeader(headerValue(headers["retry-after"]));
  const text2 = message ?? `HTTP ${status}`;
  // User-interactive auth (401 with a session and flows) needs the session to continue.
  const uia = status === 401 && isRecord(parsed) && typeof parsed.session === "string" ? { session: parsed.session, flows: parsed.flows } : {};
  return new MatrixHttpError(status, errcode, `${method} ${logPath} failed: ${status}${errcode ? ` ${errcode}` : ""}: ${text2}`, retryAfterMs, {
    method,
    path: logPath,
    ...uia,
  });
}

/**
 * HTTP client of one homeserver.
 *
 * - JSON in, JSON out; `Authorization: Bearer` when a token is set.
 * - Non-2xx answers become {@link MatrixHttpError}; failures before an answer become {@link NetworkError}.
 * - Network errors, timeouts, 429 and 500/502/503/504 are retried (same method, path and body, so
 *   PUTs carrying a transaction ID in their path stay idempotent), waiting the server's
 *   `retry_after_ms` / `Retry-After` (up to {@link MAX_RETRY_AFTER_MS}) or an exponential backoff
 *   with full jitter. Other 4xx answers are never retried.
 * - {@link HttpClient.close} aborts in-flight requests and backoff waits with {@link ClientClosedError}.
 * - The access token is never shown by `util.inspect` or `JSON.stringify` (nor logged).
 */
export class HttpClient {
  /** Origin requests go to, e.g. `https://matrix.example.org`. */
  readonly origin: string;
  /** Path prefix of the base URL without trailing slash (usually `""`). */
  readonly basePath: string;

  /** The access token, out of reach of `util.inspect` and `JSON.stringify`. */
  #token: Secret | undefined;
  private readonly dispatcher: Dispatcher;
  private readonly ownsDispatcher: boolean;
  private readonly logger: Logger;
  private readonly requestTimeoutMs: number;
  private readonly maxRetries: number;
  private readonly baseBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly random: () => number;
  private readonly closeController = new AbortController();
  private closePromise: Promise<void> | undefined;

  /**
   * @param baseUrl - Homeserver base URL, e.g. `https://matrix.example.org` (a path prefix is kept).
   * @param opts - See {@link HttpClientOptions}.
   * @throws {@link InvalidArgumentError} when `baseUrl` is not an http(s) URL.
   */
  constructor(baseUrl: string, opts: HttpClientOptions = {}) {
    let url: URL;
    try {
      url = new URL(baseUrl);
    } catch {
      throw new InvalidArgumentError(`Invalid homeserver base URL: ${baseUrl}`);
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new InvalidArgumentError(`Homeserver base URL must be http(s): ${baseUrl}`);
    }
    this.origin = url.origin;
    this.basePath = url.pathname.replace(/\/+$/, "");
    this.setAccessToken(opts.accessToken);
    this.logger = opts.logger ?? noopLogger;
    this.requestTimeoutMs = nonNegative(opts.requestTimeoutMs, 60_000);
    this.maxRetries = Math.floor(nonNegative(opts.maxRetries, 5));
    this.baseBackoffMs = nonNegative(opts.baseBackoffMs, 500);
    this.maxBackoffMs = nonNegative(opts.maxBackoffMs, 30_000);
    this.random = opts.random ?? Math.random;
    if (opts.dispatcher) {
      this.dispatcher = opts.dispatcher;
      this.ownsDispatcher = false;
    } else {
      this.dispatcher = new Pool(this.origin);
      this.ownsDispatcher = true;
    }
  }

  /**
   * Encode path segments into a path: each segment goes through `encodeURIComponent` and they
   * are joined with `/`, with a leading `/`.
   *
   * @example `HttpClient.encodePath("_matrix", "client", "v3", "rooms", roomId, "state")`
   * @param segments - Raw (unencoded) path segments.
   * @returns The encoded path, e.g. `/_matrix/client/v3/rooms/!r%3Ahs/state`.
   */
  static encodePath(...segments: ReadonlyArray<string | number>): string {
    return "/" + segments.map((s) => encodeURIComponent(String(s))).join("/");
  }

  /** Same as the module-level {@link makeTxnId}. */
  static makeTxnId(): string {
    return makeTxnId();
  }

  /** The access token currently sent with authenticated requests, if any. */
  get accessToken(): string | undefined {
    return this.#token?.reveal();
  }

  /** True once {@link HttpClient.close} was called. */
  get closed(): boolean {
    return this.closeController.signal.aborted;
  }

  /**
   * Set or clear the access token used by later requests (and later retries of pending ones).
   * @param token - The new token, or `undefined` to send no `Authorization` header.
   */
  setAccessToken(token: string | undefined): void {
    this.#token = token === undefined ? undefined : new Secret(token);
  }

  /** What `JSON.stringify` shows: the origin and whether a token is set, never the token. */
  toJSON(): { origin: string; basePath: string; hasAccessToken: boolean; closed: boolean } {
    return { origin: this.origin, basePath: this.basePath, hasAccessToken: this.#token !== undefined, closed: this.closed };
  }

  /** What `util.inspect` shows: the same summary as {@link HttpClient.toJSON}. */
  [inspectCustom](_depth: number, options: object, inspect: InspectFn): string {
    return redactedInspect("HttpClient", this.toJSON(), options, inspect);
  }

  /**
   * Send a request and parse its JSON answer, retrying as described on {@link HttpClient}.
   *
   * @typeParam T - Expected shape of the JSON answer (not validated).
   * @param method - HTTP method, e.g. `"GET"` or `"PUT"`.
   * @param path - Encoded path starting with `/`, e.g. `/_matrix/client/v3/sync` (see {@link p}).
   * @param opts - See {@link RequestOptions}.
   * @returns The parsed JSON body of the 2xx answer (`{}` for 204 No Content).
   * @throws {@link MatrixHttpError} for a non-2xx answer (after retries), or with errcode
   *   `M_NOT_JSON` when a 2xx body is not valid JSON.
   * @throws {@link NetworkError} when no answer arrived (after retries); the cause is attached.
   * @throws {@link ClientClosedError} when the client is or gets closed.
   * @throws `opts.signal.reason` when the caller aborts.
   */
  async request<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
    if (this.closed) throw new ClientClosedError("The HTTP client is closed.");
    if (!path.startsWith("/")) throw new InvalidArgumentError(`Request path must start with "/": ${path}`);
    const userSignal = opts.signal;
    if (userSignal?.aborted) throw userSignal.reason;

    const upper = method.toUpperCase();
    const logPath = this.basePath + path.split("?")[0];
    const fullPath = this.basePath + path + this.queryString(path, opts.query);
    const timeoutMs = nonNegative(opts.timeoutMs, this.requestTimeoutMs);
    const retry = opts.retry !== false;

    let body: string | Uint8Array | (() => Readable) | null = null;
    let contentType: string | undefined;
    if (opts.streamBody !== undefined) {
      body = opts.streamBody;
      contentType = opts.contentType ?? "application/octet-stream";
    } else if (opts.rawBody !== undefined) {
      body = opts.rawBody;
      contentType = opts.contentType ?? "application/octet-stream";
    } else if (opts.body !== undefined) {
      body = JSON.stringify(opts.body);
      contentType = opts.contentType ?? "application/json";
    }

    // One controller per request, fed by the caller's signal and by close(). Listeners are removed
    // in `finally`, so long-lived signals do not accumulate them.
    const ctl = new AbortController();
    const onClose = (): void => ctl.abort(new ClientClosedError("The HTTP client was closed."));
    const onUserAbort = (): void => ctl.abort(userSignal?.reason);
    this.closeController.signal.addEventListener("abort", onClose, { once: true });
    userSignal?.addEventListener("abort", onUserAbort, { once: true });
    try {
      for (let attempt = 0; ; attempt++) {
        try {
          return await this.attempt<T>(upper, fullPath, logPath, body, contentType, opts.auth !== false, timeoutMs, ctl.signal, opts.contentLength);
        } catch (err) {
          if (ctl.signal.aborted) throw ctl.signal.reason;
          if (!retry || attempt >= this.maxRetries || !HttpClient.isRetryable(err)) throw err;
          const delay = this.retryDelay(err, attempt);
          this.logger.warn(
            `${upper} ${logPath} failed (${HttpClient.describe(err)}); retry ${attempt + 1}/${this.maxRetries} in ${delay} ms`,
          );
          await sleep(delay, ctl.signal);
        }
      }
    } finally {
      this.closeController.signal.removeEventListener("abort", onClose);
      userSignal?.removeEventListener("abort", onUserAbort);
    }
  }

  /**
   * GET a binary resource as a stream (media downloads). No retries; a non-2xx answer becomes a
   * {@link MatrixHttpError}. The caller must consume or destroy the returned stream.
   */
  async download(path: string, opts: { signal?: AbortSignal; timeoutMs?: number } = {}): Promise<{ body: Readable; contentType: string | undefined; length: number | undefined }> {
    if (this.closed) throw new ClientClosedError("The HTTP client is closed.");
    const headers: Record<string, string> = {};
    if (this.#token !== undefined) headers.authorization = `Bearer ${this.#token.reveal()}`;
    const logPath = this.basePath + path.split("?")[0];
    let res: Dispatcher.ResponseData;
    try {
      res = await this.dispatcher.request({
        origin: this.origin,
        path: this.basePath + path,
        method: "GET",
        headers,
        headersTimeout: opts.timeoutMs ?? this.requestTimeoutMs,
        bodyTimeout: opts.timeoutMs ?? this.requestTimeoutMs,
        ...(opts.signal ? { signal: opts.signal } : {}),
      });
    } catch (err) {
      throw new NetworkError(`GET ${logPath} failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    if (res.statusCode < 200 || res.statusCode >= 300) {
      const text = await res.body.text().catch(() => "");
      throw httpErrorFromResponse(res.statusCode, text, res.headers, "GET", logPath);
    }
    const ct = res.headers["content-type"];
    const len = Number(res.headers["content-length"]);
    return { body: res.body as unknown as Readable, contentType: typeof ct === "string" ? ct : undefined, length: Number.isFinite(len) ? len : undefined };
  }

  /**
   * Close the client: pending and later requests, including backoff waits, reject with
   * {@link ClientClosedError}, and the connection pool is destroyed (unless the dispatcher was
   * supplied by the caller). Idempotent.
   */
  close(): Promise<void> {
    if (this.closePromise) return this.closePromise;
    this.closeController.abort(new ClientClosedError("The HTTP client was closed."));
    this.closePromise = this.ownsDispatcher ? this.dispatcher.destroy().catch(() => undefined) : Promise.resolve();
    return this.closePromise;
  }

  /** Whether `err` from one attempt may be retried: network errors, 429 and 500/502/503/504. */
  private static isRetryable(err: unknown): boolean {
    if (err instanceof NetworkError) return true;
    if (err instanceof MatrixHttpError) {
      if (err.errcode === "M_NOT_JSON" && err.status >= 200 && err.status < 300) return false;
      return err.status === 429 || RETRYABLE_5XX.has(err.status);
    }
    return false;
  }

  /** Loggable one-line description of an attempt's failure (no secrets). */
  private static describe(err: unknown): string {
    if (err instanceof MatrixHttpError) return `${err.status}${err.errcode ? ` ${err.errcode}` : ""}`;
    if (err instanceof Error) return err.message;
    return String(err);
  }

  /** Delay before retry number `attempt` (0-based). */
  private retryDelay(err: unknown, attempt: number): number {
    if (err instanceof MatrixHttpError && err.retryAfterMs !== undefined) {
      return Math.min(Math.max(0, err.retryAfterMs), MAX_RETRY_AFTER_MS);
    }
    return computeBackoff(attempt, this.baseBackoffMs, this.maxBackoffMs, this.random);
  }

  private queryString(path: string, query: QueryParams | undefined): string {
    if (!query) return "";
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) {
      if (v !== undefined) params.append(k, String(v));
    }
    const s = params.toString();
    if (s === "") return "";
    return (path.includes("?") ? "&" : "?") + s;
  }

  /** One attempt: send, read the whole body, map the outcome to a value or a typed error. */
  private async attempt<T>(
    method: string,
    fullPath: string,
    logPath: string,
    body: string | Uint8Array | (() => Readable) | null,
    contentType: string | undefined,
    auth: boolean,
    timeoutMs: number,
    parent: AbortSignal,
    contentLength?: number,
  ): Promise<T> {
    const headers: Record<string, string> = { accept: "application/json" };
    if (contentType !== undefined) headers["content-type"] = contentType;
    if (contentLength !== undefined) headers["content-length"] = String(contentLength);
    if (auth && this.#token !== undefined) headers.authorization = `Bearer ${this.#token.reveal()}`;

    if (parent.aborted) throw parent.reason;
    const attemptCtl = new AbortController();
    const onParentAbort = (): void => attemptCtl.abort(parent.reason);
    parent.addEventListener("abort", onParentAbort, { once: true });
    let timedOut = false;
    // 0 means "no limit"; setTimeout cannot wait longer than 2^31-1 ms.
    const timer =
      timeoutMs > 0
        ? setTimeout(
            () => {
              timedOut = true;
              attemptCtl.abort(new AttemptTimeout(timeoutMs));
            },
            Math.min(timeoutMs, 2_147_483_647),
          )
        : undefined;
    const started = performance.now();
    const elapsed = (): number => Math.round(performance.now() - started);

    const toNetworkError = (err: unknown): unknown => {
      if (parent.aborted) return parent.reason;
      if (timedOut) {
        this.logger.debug(`${method} ${logPath} -> timeout after ${elapsed()} ms`);
        return new NetworkError(`${method} ${logPath} timed out after ${timeoutMs} ms`, { cause: err });
      }
      const code = isRecord(err) && typeof err.code === "string" ? err.code : undefined;
      if (code !== undefined && NON_NETWORK_UNDICI_CODES.has(code)) return err;
      const msg = err instanceof Error ? err.message : String(err);
      this.logger.debug(`${method} ${logPath} -> network error after ${elapsed()} ms: ${msg}`);
      return new NetworkError(`${method} ${logPath} failed: ${msg}`, { cause: err });
    };

    try {
      let res: Dispatcher.ResponseData;
      try {
        res = await this.dispatcher.request({
          origin: this.origin,
          path: fullPath,
          method: method as Dispatcher.HttpMethod,
          headers,
          body: typeof body === "function" ? body() : body,
          signal: attemptCtl.signal,
          headersTimeout: timeoutMs,
          bodyTimeout: timeoutMs,
        });
      } catch (err) {
        throw toNetworkError(err);
      }
      let text: string;
      try {
        text = await res.body.text();
      } catch (err) {
        throw toNetworkError(err);
      }
      const status = res.statusCode;
      this.logger.debug(`${method} ${logPath} -> ${status} (${elapsed()} ms)`);
      if (status < 200 || status >= 300) {
        throw httpErrorFromResponse(status, text, res.headers, method, logPath);
      }
      if (status === 204 || (text === "" && method === "HEAD")) return {} as T;
      try {
        return JSON.parse(text) as T;
      } catch {
        throw new MatrixHttpError(status, "M_NOT_JSON", `${method} ${logPath} returned ${status} with a body that is not valid JSON`, undefined, {
          method,
          path: logPath,
        });
      }
    } finally {
      clearTimeout(timer);
      parent.removeEventListener("abort", onParentAbort);
    }
  }
}
