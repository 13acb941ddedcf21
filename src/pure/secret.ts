/**
 * Keeping secrets (access tokens, pickle keys, recovery keys) out of `util.inspect`,
 * `JSON.stringify`, string conversion and so out of logs and crash dumps.
 *
 * Two pieces: {@link Secret}, a box whose value lives in an ES private field (which
 * `util.inspect` never shows, not even with `showHidden`), and {@link redactedInspect}, the one
 * way a class holding secrets describes itself (its `[util.inspect.custom]` and `toJSON` show a
 * summary without them).
 * @packageDocumentation
 */

/** The `util.inspect.custom` symbol (the same registered symbol `node:util` exports). */
export const inspectCustom: unique symbol = Symbol.for("nodejs.util.inspect.custom") as never;

/** What a redacted value shows. */
export const REDACTED = "[redacted]";

/** The `inspect` function Node passes to a `[util.inspect.custom]` method. */
export type InspectFn = (value: unknown, options?: object) => string;

/**
 * A secret string. `util.inspect`, `JSON.stringify`, template strings and `String()` show
 * `[redacted]`; only {@link Secret.reveal} returns the value.
 */
export class Secret {
  readonly #value: string;

  /** @param value - The secret. */
  constructor(value: string) {
    this.#value = value;
  }

  /** The secret itself: pass it on where it is needed, never log it. */
  reveal(): string {
    return this.#value;
  }

  /** `[redacted]` (for `JSON.stringify`). */
  toJSON(): string {
    return REDACTED;
  }

  /** `[redacted]` (for string conversion). */
  toString(): string {
    return REDACTED;
  }

  /** `Secret [redacted]` (for `util.inspect`). */
  [inspectCustom](): string {
    return `Secret ${REDACTED}`;
  }
}

/**
 * What a `[util.inspect.custom]` method of a class holding secrets returns: the class name and
 * `summary` (which must hold no secret), inspected with the caller's options.
 *
 * @example
 * ```ts
 * [inspectCustom](_depth: number, options: object, inspect: InspectFn): string {
 *   return redactedInspect("HttpClient", this.toJSON(), options, inspect);
 * }
 * ```
 */
export function redactedInspect(name: string, summary: Record<string, unknown>, options: object, inspect: InspectFn): string {
  return `${name} ${inspect(summary, options)}`;
}
