/**
 * The one validation of a change batch ({@link StoreChanges}), shared by the built-in stores and
 * exported (`matrix-e2ee-worker-sdk/stores`) for custom ones.
 *
 * A store validates the whole batch before applying any of it, so a malformed batch fails with a
 * `StoreError` and changes nothing (the atomicity the conformance suite checks):
 * {@link validateChanges} checks its shape, {@link validateBatchForAccount} adds the rules about
 * the selected account.
 *
 * @packageDocumentation
 */

import { StoreError } from "../../src/protocol/errors.js";
import type { SenderData, StoreChanges } from "../../src/protocol/store.js";

/** Throw the `StoreError` of a batch field `path` that is not `expected` (never echoes the value). */
export function invalidBatch(path: string, expected: string): never {
  throw new StoreError(`Invalid store batch: ${path} must be ${expected}.`, { field: path });
}
function vStr(v: unknown, p: string): void {
  if (typeof v !== "string") invalidBatch(p, "a string");
}
function vStrOrNull(v: unknown, p: string): void {
  if (v !== null && typeof v !== "string") invalidBatch(p, "a string or null");
}
function vNum(v: unknown, p: string): void {
  if (typeof v !== "number" || !Number.isFinite(v)) invalidBatch(p, "a finite number");
}
function vInt(v: unknown, p: string): void {
  if (typeof v !== "number" || !Number.isSafeInteger(v)) invalidBatch(p, "an integer");
}
function vBool(v: unknown, p: string): void {
  if (typeof v !== "boolean") invalidBatch(p, "a boolean");
}
function vStrArr(v: unknown, p: string): void {
  if (!Array.isArray(v)) invalidBatch(p, "an array of strings");
  (v as unknown[]).forEach((x, i) => vStr(x, `${p}[${i}]`));
}
function vArr(v: unknown, p: string): unknown[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) invalidBatch(p, "an array");
  return v as unknown[];
}
function vRec(v: unknown, p: string): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) invalidBatch(p, "an object");
  return v as Record<string, unknown>;
}
const SOURCES: readonly string[] = ["own", "room_key", "forwarded", "imported"];
const SHARE_STATES: readonly string[] = ["pending", "shared", "withheld"];
const SENDER_DATA_KINDS: readonly SenderData["kind"][] = ["own", "olm", "forwarded", "imported", "backup"];

/** {@link SenderData}: the fields its `kind` lists, `deviceId` a string or null. */
function vSenderData(v: unknown, p: string): void {
  const s = vRec(v, p);
  switch (s.kind) {
    case "own":
    case "imported":
      return;
    case "olm":
      vStr(s.userId, `${p}.userId`);
      vStrOrNull(s.deviceId, `${p}.deviceId`);
      vStr(s.curve25519, `${p}.curve25519`);
      vStr(s.ed25519, `${p}.ed25519`);
      return;
    case "forwarded":
      vStr(s.userId, `${p}.userId`);
      vStrOrNull(s.deviceId, `${p}.deviceId`);
      vStr(s.curve25519, `${p}.curve25519`);
      if (s.claimedSender !== undefined) vStr(s.claimedSender, `${p}.claimedSender`);
      return;
    case "backup":
      vStr(s.version, `${p}.version`);
      return;
    default:
      invalidBatch(`${p}.kind`, SENDER_DATA_KINDS.join(" | "));
  }
}

/**
 * Check that `c` has the {@link StoreChanges} shape, before anything of it is applied. Throws
 * `StoreError` (code `M_SDK_STORE`, `field` naming the path) at the first field that does not
 * match; the message names the field and what it must be, never its value (values may be
 * secret). Extra fields are not rejected.
 *
 * Both built-in stores call it first thing in `saveChanges`; a custom store can do the same to
 * reject a malformed batch with the same errors.
 */
export function validateChanges(c: StoreChanges): void {
  vRec(c, "changes");
  if (c.account !== undefined) {
    const a = vRec(c.account, "account");
    vStr(a.userId, "account.userId");
    vStr(a.deviceId, "account.deviceId");
    vStr(a.pickle, "account.pickle");
    vBool(a.deviceKeysUploaded, "account.deviceKeysUploaded");
    vNum(a.createdTs, "account.createdTs");
  }
  vArr(c.olmSessions, "olmSessions").forEach((x, i) => {
    const p = `olmSessions[${i}]`;
    const r = vRec(x, p);
    vStr(r.senderKey, `${p}.senderKey`);
    vStr(r.sessionId, `${p}.sessionId`);
    vStr(r.pickle, `${p}.pickle`);
    vNum(r.createdTs, `${p}.createdTs`);
    vNum(r.lastUsedTs, `${p}.lastUsedTs`);
  });
  vArr(c.inboundGroupSessions, "inboundGroupSessions").forEach((x, i) => {
    const p = `inboundGroupSessions[${i}]`;
    const r = vRec(x, p);
    vStr(r.roomId, `${p}.roomId`);
    vStr(r.senderKey, `${p}.senderKey`);
    vStr(r.sessionId, `${p}.sessionId`);
    vStr(r.pickle, `${p}.pickle`);
    vStr(r.claimedEd25519, `${p}.claimedEd25519`);
    vStrArr(r.forwardingChain, `${p}.forwardingChain`);
    vInt(r.firstKnownIndex, `${p}.firstKnownIndex`);
    if (typeof r.source !== "string" || !SOURCES.includes(r.source)) invalidBatch(`${p}.source`, SOURCES.join(" | "));
    if (r.senderData !== undefined) vSenderData(r.senderData, `${p}.senderData`);
    vNum(r.createdTs, `${p}.createdTs`);
    if (r.backedUpVersion !== undefined) vStr(r.backedUpVersion, `${p}.backedUpVersion`);
  });
  vArr(c.outboundGroupSessions, "outboundGroupSessions").forEach((x, i) => {
    const p = `outboundGroupSessions[${i}]`;
    const r = vRec(x, p);
    vStr(r.roomId, `${p}.roomId`);
    vStr(r.sessionId, `${p}.sessionId`);
    vStr(r.pickle, `${p}.pickle`);
    vNum(r.createdTs, `${p}.createdTs`);
    vInt(r.messageCount, `${p}.messageCount`);
    vNum(r.rotationPeriodMs, `${p}.rotationPeriodMs`);
    vNum(r.rotationPeriodMsgs, `${p}.rotationPeriodMsgs`);
    if (r.inUseBy !== undefined) vStr(r.inUseBy, `${p}.inUseBy`);
    vArr(r.sharedWith ?? null, `${p}.sharedWith`).forEach((y, k) => {
      const q = `${p}.sharedWith[${k}]`;
      const e = vRec(y, q);
      vStr(e.userId, `${q}.userId`);
      vStr(e.deviceId, `${q}.deviceId`);
      vStr(e.curve25519, `${q}.curve25519`);
      if (typeof e.state !== "string" || !SHARE_STATES.includes(e.state)) invalidBatch(`${q}.state`, SHARE_STATES.join(" | "));
      if (e.withheldCode !== undefined) vStr(e.withheldCode, `${q}.withheldCode`);
    });
  });
  vArr(c.deletedOutboundGroupSessions, "deletedOutboundGroupSessions").forEach((x, i) => vStr(x, `deletedOutboundGroupSessions[${i}]`));
  vArr(c.devices, "devices").forEach((x, i) => {
    const p = `devices[${i}]`;
    const r = vRec(x, p);
    vStr(r.userId, `${p}.userId`);
    vStr(r.deviceId, `${p}.deviceId`);
    vStr(r.ed25519, `${p}.ed25519`);
    vStr(r.curve25519, `${p}.curve25519`);
    vStrArr(r.algorithms, `${p}.algorithms`);
    if (r.displayName !== undefined) vStr(r.displayName, `${p}.displayName`);
    vBool(r.verified, `${p}.verified`);
    vBool(r.blacklisted, `${p}.blacklisted`);
    vBool(r.ignored, `${p}.ignored`);
    vBool(r.deleted, `${p}.deleted`);
    vStr(r.keysJson, `${p}.keysJson`);
    vNum(r.firstSeenTs, `${p}.firstSeenTs`);
  });
  vArr(c.trackedUsers, "trackedUsers").forEach((x, i) => {
    const p = `trackedUsers[${i}]`;
    const r = vRec(x, p);
    vStr(r.userId, `${p}.userId`);
    vBool(r.dirty, `${p}.dirty`);
  });
  vArr(c.untrackedUsers, "untrackedUsers").forEach((x, i) => vStr(x, `untrackedUsers[${i}]`));
  vArr(c.rooms, "rooms").forEach((x, i) => {
    const p = `rooms[${i}]`;
    const r = vRec(x, p);
    vStr(r.roomId, `${p}.roomId`);
    if (r.encryption !== null) vRec(r.encryption, `${p}.encryption`);
    vStrOrNull(r.historyVisibility, `${p}.historyVisibility`);
  });
  vArr(c.roomMembers, "roomMembers").forEach((x, i) => {
    const p = `roomMembers[${i}]`;
    const r = vRec(x, p);
    vStr(r.roomId, `${p}.roomId`);
    vStr(r.userId, `${p}.userId`);
    vStr(r.membership, `${p}.membership`);
  });
  vArr(c.replayRecords, "replayRecords").forEach((x, i) => {
    const p = `replayRecords[${i}]`;
    const r = vRec(x, p);
    vStr(r.senderKey, `${p}.senderKey`);
    vStr(r.sessionId, `${p}.sessionId`);
    vInt(r.messageIndex, `${p}.messageIndex`);
    vStr(r.eventId, `${p}.eventId`);
    vNum(r.originServerTs, `${p}.originServerTs`);
  });
  vArr(c.pendingEvents, "pendingEvents").forEach((x, i) => {
    const p = `pendingEvents[${i}]`;
    const r = vRec(x, p);
    vStr(r.roomId, `${p}.roomId`);
    vStr(r.sessionId, `${p}.sessionId`);
    vStr(r.eventId, `${p}.eventId`);
    vStr(r.eventJson, `${p}.eventJson`);
    vNum(r.receivedTs, `${p}.receivedTs`);
  });
  vArr(c.deletedPendingEvents, "deletedPendingEvents").forEach((x, i) => {
    const p = `deletedPendingEvents[${i}]`;
    const r = vRec(x, p);
    vStr(r.roomId, `${p}.roomId`);
    vStr(r.eventId, `${p}.eventId`);
  });
  vArr(c.toDeviceDigests, "toDeviceDigests").forEach((x, i) => vStr(x, `toDeviceDigests[${i}]`));
  if (c.values !== undefined) {
    for (const [k, v] of Object.entries(vRec(c.values, "values"))) vStrOrNull(v, `values[${JSON.stringify(k)}]`);
  }
  if (c.syncToken !== undefined) vStr(c.syncToken, "syncToken");
}

/**
 * True when the batch writes nothing besides (possibly) the account. The built-in stores accept
 * such a batch for a selected account that does not exist yet (and write nothing), and reject any
 * other batch without `account` for it.
 */
export function isEmptyBatch(c: StoreChanges): boolean {
  return (
    !c.olmSessions?.length &&
    !c.inboundGroupSessions?.length &&
    !c.outboundGroupSessions?.length &&
    !c.deletedOutboundGroupSessions?.length &&
    !c.devices?.length &&
    !c.trackedUsers?.length &&
    !c.untrackedUsers?.length &&
    !c.rooms?.length &&
    !c.roomMembers?.length &&
    !c.replayRecords?.length &&
    !c.pendingEvents?.length &&
    !c.deletedPendingEvents?.length &&
    !c.toDeviceDigests?.length &&
    (c.values === undefined || Object.keys(c.values).length === 0) &&
    c.syncToken === undefined
  );
}

/**
 * Validate a batch for the account a store has selected, before anything of it is applied:
 * {@link validateChanges}, then the account rules both built-in stores follow. Throws
 * `StoreError` when no account is selected and the batch carries no `account`, when the batch's
 * `account` is not the selected one, or when the selected account does not exist yet and the
 * batch writes records without carrying `account`.
 *
 * @param selected - The account of the last `useAccount`, or null before any.
 * @param selectedExists - Whether the store holds that account already.
 * @returns false when there is nothing to apply (an empty batch for an account that does not
 *   exist yet), true otherwise.
 */
export function validateBatchForAccount(c: StoreChanges, selected: { userId: string; deviceId: string } | null, selectedExists: boolean): boolean {
  validateChanges(c);
  const acc = c.account;
  if (!selected && !acc) throw new StoreError("No account selected; call useAccount() first.");
  if (selected && acc && (acc.userId !== selected.userId || acc.deviceId !== selected.deviceId)) {
    throw new StoreError("The batch's account is not the selected account.");
  }
  if (!acc && !selectedExists) {
    if (isEmptyBatch(c)) return false;
    throw new StoreError("The selected account does not exist yet; the first batch must carry `account`.");
  }
  return true;
}
