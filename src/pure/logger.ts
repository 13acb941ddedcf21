/**
 * Logger injected into the client and the worker. No-op by default; never pass secrets to it.
 * @packageDocumentation
 */

/** Minimal structured logger (compatible with console, pino and winston-like objects). */
export interface Logger {
  debug(msg: string, ...args: unknown[]): void;
  info(msg: string, ...args: unknown[]): void;
  warn(msg: string, ...args: unknown[]): void;
  error(msg: string, ...args: unknown[]): void;
  /** A logger whose lines are prefixed with `prefix`. */
  child?(prefix: string): Logger;
}

const noop = (): void => {};

/** A logger that drops everything. */
export const noopLogger: Logger = { debug: noop, info: noop, warn: noop, error: noop, child: () => noopLogger };

/** Log levels, lowest first. */
export type LogLevel = "debug" | "info" | "warn" | "error";
const ORDER: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

/** Whether a record at `level` passes a minimum level of `min`. */
export function levelEnabled(level: LogLevel, min: LogLevel): boolean {
  return ORDER[level] >= ORDER[min];
}

/** A console logger with a minimum level and a prefix. */
export function consoleLogger(level: LogLevel = "info", prefix = ""): Logger {
  const mk =
    (l: LogLevel) =>
    (msg: string, ...args: unknown[]): void => {
      if (!levelEnabled(l, level)) return;
      const line = `${new Date().toISOString()} ${l.toUpperCase()} ${prefix}${msg}`;
      (l === "error" ? console.error : l === "warn" ? console.warn : console.log)(line, ...args);
    };
  return { debug: mk("debug"), info: mk("info"), warn: mk("warn"), error: mk("error"), child: (p) => consoleLogger(level, `${prefix}${p} `) };
}

/** `logger.child(prefix)` when supported, else a prefixing wrapper. */
export function childLogger(logger: Logger, prefix: string): Logger {
  if (logger.child) return logger.child(prefix);
  const wrap =
    (f: (m: string, ...a: unknown[]) => void) =>
    (m: string, ...a: unknown[]): void =>
      f.call(logger, `${prefix} ${m}`, ...a);
  return { debug: wrap(logger.debug), info: wrap(logger.info), warn: wrap(logger.warn), error: wrap(logger.error) };
}

/** One log line as it crosses a thread boundary (structured-clone-safe). */
export interface LogRecord {
  level: LogLevel;
  msg: string;
  args: unknown[];
}

/**
 * `v` in a form that survives `postMessage`: primitives as they are, errors as
 * `{ name, message, code? }`, plain data cloned, anything else (functions, symbols, objects that
 * cannot be cloned) as a short description.
 */
export function cloneSafe(v: unknown): unknown {
  if (v instanceof Error) {
    const code = (v as { code?: unknown }).code;
    return { name: v.name, message: v.message, ...(typeof code === "string" ? { code } : {}) };
  }
  if (typeof v === "function" || typeof v === "symbol") return String(v);
  if (typeof v !== "object" || v === null) return v;
  try {
    return structuredClone(v);
  } catch {
    return Object.prototype.toString.call(v);
  }
}

/**
 * A logger that hands every record at or above `level` to `post` (for example to another thread,
 * where {@link logRecord} replays it), with its arguments made {@link cloneSafe}. Records below
 * `level` are dropped here, before anything is posted.
 */
export function forwardingLogger(level: LogLevel, post: (record: LogRecord) => void, prefix = ""): Logger {
  const mk =
    (l: LogLevel) =>
    (msg: string, ...args: unknown[]): void => {
      if (levelEnabled(l, level)) post({ level: l, msg: `${prefix}${msg}`, args: args.map(cloneSafe) });
    };
  return { debug: mk("debug"), info: mk("info"), warn: mk("warn"), error: mk("error"), child: (p) => forwardingLogger(level, post, `${prefix}${p} `) };
}

/** Replay a record from {@link forwardingLogger} on `logger`; false (nothing logged) when it is not a well-formed record. */
export function logRecord(logger: Logger, record: unknown): boolean {
  const r = record as Partial<LogRecord> | null;
  if (typeof r !== "object" || r === null || typeof r.msg !== "string" || !Array.isArray(r.args)) return false;
  if (r.level !== "debug" && r.level !== "info" && r.level !== "warn" && r.level !== "error") return false;
  logger[r.level](r.msg, ...r.args);
  return true;
}
