/**
 * Canonical JSON (Matrix spec, Appendices: "Canonical JSON"): object keys sorted by code point,
 * no insignificant whitespace, UTF-8, shortest escapes — what `JSON.stringify` emits once keys
 * are sorted.
 * @internal
 */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value !== null && typeof value === "object") {
    const obj = value as Record<string, unknown>;
    // A null-prototype object, so a "__proto__" member stays a member (and stays signed).
    const out = Object.create(null) as Record<string, unknown>;
    for (const k of Object.keys(obj).sort(compareCodePoints)) {
      if (obj[k] !== undefined) out[k] = sortKeys(obj[k]);
    }
    return out;
  }
  if (typeof value === "number" && !Number.isInteger(value)) {
    throw new TypeError("canonical JSON does not allow non-integer numbers");
  }
  return value;
}

function compareCodePoints(a: string, b: string): number {
  // Sort by Unicode code point, not UTF-16 code unit (they differ above U+FFFF).
  const ia = [...a];
  const ib = [...b];
  const n = Math.min(ia.length, ib.length);
  for (let i = 0; i < n; i++) {
    const ca = ia[i]!.codePointAt(0)!;
    const cb = ib[i]!.codePointAt(0)!;
    if (ca !== cb) return ca - cb;
  }
  return ia.length - ib.length;
}

/** The object without `signatures` and `unsigned`, as signed. @internal */
export function signablePart(obj: Record<string, unknown>): Record<string, unknown> {
  const { signatures: _s, unsigned: _u, ...rest } = obj;
  return rest;
}
