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

/** A console logger with a minimum level and a prefix. */
export function consoleLogger(level: LogLevel = "info", prefix = ""): Logger {
  const mk =
    (l: LogLevel) =>
    (msg: string, ...args: unknown[]): void => {
      if (ORDER[l] < ORDER[level]) return;
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
