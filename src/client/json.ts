/**
 * JSON shapes read from the homeserver: the object type and its guard, shared by the client's components.
 * @internal
 */

/** A JSON object as parsed from a response (fields still unchecked). @internal */
export type Json = Record<string, unknown>;

/** Whether `v` is a JSON object (not null, not an array). @internal */
export const isObj = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);
