/**
 * Entry point of the crypto worker thread: opens the store, initialises libolm, builds the
 * engine and exposes a narrow, frozen facade through Comlink. Posts `ready` (or `init-error`)
 * once the store is open and migrated, and `log` records (at or above `WorkerOptions.logLevel`)
 * for the host to hand to the application's logger: the worker never prints.
 *
 * Every facade method returns an envelope (`{ ok, value } | { ok: false, error }`) so typed
 * errors keep their code and details across the boundary; calls run one at a time.
 */
import { parentPort, workerData } from "node:worker_threads";
import * as Comlink from "comlink/dist/esm/comlink.mjs";
import nodeEndpoint from "comlink/dist/esm/node-adapter.mjs";
import Olm from "@matrix-org/olm";
import { PROTOCOL_VERSION, type WorkerOptions, type CryptoWorkerApi } from "../src/protocol/api.js";
import { deserializeError, serializeError, type SerializedError } from "../src/protocol/errors.js";
import type { CryptoStore } from "../src/protocol/store.js";
import { forwardingLogger, noopLogger, type Logger } from "../src/pure/logger.js";
import { CryptoEngine } from "./engine/CryptoEngine.js";
import { openStore } from "./store/openStore.js";
import { exportKeysToFile, importKeysFromFile } from "./keyFiles.js";

/** Envelope every facade call resolves with. @internal */
export type Envelope<T> = { ok: true; value: T } | { ok: false; error: SerializedError };

/** The facade's shape as seen by the host. @internal */
export type WorkerFacade = {
  [K in keyof CryptoWorkerApi]: CryptoWorkerApi[K] extends (...args: infer A) => infer R ? (...args: A) => Promise<Envelope<Awaited<R>>> : never;
} & { close(): Promise<Envelope<void>> };

async function main(): Promise<void> {
  if (!parentPort) throw new Error("crypto-worker must run in a worker thread");
  const port = parentPort;
  const opts = workerData as WorkerOptions;
  // Log lines go to the host, which hands them to the application's logger (nothing is printed
  // here); records below the level the host asked for are never posted.
  const logger: Logger =
    opts.logLevel === "silent"
      ? noopLogger
      : forwardingLogger(opts.logLevel, (record) => {
          try {
            port.postMessage({ __sdk: "log", record });
          } catch {
            // The port is closing: the line is lost, nothing else is.
          }
        });
  let store: CryptoStore;
  let engine: CryptoEngine;
  try {
    store = await openStore(opts.store, logger);
    await Olm.init();
    engine = new CryptoEngine({ olm: Olm, store, pickleKey: opts.pickleKey, logger, ...(opts.sessionCacheSize ? { sessionCacheSize: opts.sessionCacheSize } : {}) });
  } catch (err) {
    port.postMessage({ __sdk: "init-error", error: serializeError(err) });
    return;
  }

  // One call at a time: engine calls commit with one transaction each and must not interleave.
  let queue: Promise<unknown> = Promise.resolve();
  const run = <T>(fn: () => T | Promise<T>): Promise<Envelope<T>> => {
    const p = queue.then(async (): Promise<Envelope<T>> => {
      try {
        return { ok: true, value: await fn() };
      } catch (err) {
        return { ok: false, error: serializeError(err) };
      }
    });
    queue = p;
    return p;
  };

  const unwrap = async <T>(p: Promise<Envelope<T>>): Promise<T> => {
    const e = await p;
    if (e.ok) return e.value;
    throw deserializeError(e.error);
  };

  let closed = false;
  const facade: WorkerFacade = Object.freeze({
    protocolVersion: () => run(() => PROTOCOL_VERSION),
    getStoredDeviceId: (userId: string) => run(() => engine.getStoredDeviceId(userId)),
    listAccounts: () => run(() => store.listAccounts()),
    loadAccount: (userId: string, deviceId: string) => run(() => engine.loadAccount(userId, deviceId)),
    identity: () => run(() => engine.identity()),
    deleteStoredDevice: (userId: string, deviceId: string) => run(() => engine.deleteStoredDevice(userId, deviceId)),
    storeLocation: () => run(() => store.location),
    getSyncToken: () => run(() => engine.getSyncToken()),
    outgoingRequests: () => run(() => engine.outgoingRequests()),
    markRequestAsSent: (id, kind, responseJson) => run(() => engine.markRequestAsSent(id, kind, responseJson)),
    markRequestAsFailed: (id, kind, errcode, message) => run(() => engine.markRequestAsFailed(id, kind, errcode, message)),
    receiveSyncChanges: (inputJson: string, opts) => run(() => engine.receiveSyncChanges(JSON.parse(inputJson), opts ?? {})),
    commitSyncToken: (token: string, batchId: string, syncFirst?: string[]) => run(() => engine.commitSyncToken(token, batchId, syncFirst)),
    decryptSyncTimelines: (rooms) => run(() => engine.decryptSyncTimelines(rooms)),
    decryptSyncTimelinesPooled: (rooms) => run(() => engine.decryptSyncTimelinesPooled(rooms)),
    decryptRoomEvents: (roomId: string, eventsJson: string) => run(() => engine.decryptRoomEvents(roomId, JSON.parse(eventsJson) as unknown[])),
    setRoomEncryption: (roomId, encryption) => run(() => engine.setRoomEncryption(roomId, encryption)),
    setRoomMembers: (roomId, members) => run(() => engine.setRoomMembers(roomId, members)),
    getRoomInfo: (roomId: string) => run(() => engine.getRoomInfo(roomId)),
    prepareRoomKeyShare: (roomId: string, verify: boolean, onlyCrossSigned?: boolean) => run(() => engine.prepareRoomKeyShare(roomId, verify, onlyCrossSigned)),
    shareRoomKey: (roomId: string, verify: boolean, onlyCrossSigned?: boolean) => run(() => engine.shareRoomKey(roomId, verify, onlyCrossSigned)),
    prepareCrossSigning: (opts) => run(() => engine.prepareCrossSigning(opts)),
    commitCrossSigning: (masterKey: string) => run(() => engine.commitCrossSigning(masterKey)),
    discardCrossSigning: () => run(() => engine.discardCrossSigning()),
    restoreCrossSigning: (input) => run(() => engine.restoreCrossSigning(input)),
    verifyUser: (userId: string) => run(() => engine.verifyUser(userId)),
    refreshUsers: (userIds: string[]) => run(() => engine.refreshUsers(userIds)),
    getUserIdentity: (userId: string) => run(() => engine.getUserIdentity(userId)),
    acknowledgeIdentityChange: (userId: string) => run(() => engine.acknowledgeIdentityChange(userId)),
    discardRoomKey: (roomId: string) => run(() => engine.discardRoomKey(roomId)),
    encryptRoomEventIfReady: (roomId, eventType, contentJson, verifyDevices, onlyCrossSigned) => run(() => engine.encryptRoomEventIfReady(roomId, eventType, contentJson, verifyDevices, onlyCrossSigned)),
    encryptRoomEvent: (roomId: string, type: string, contentJson: string) =>
      run(async () => JSON.stringify(await engine.encryptRoomEvent(roomId, type, JSON.parse(contentJson) as Record<string, unknown>))),
    setKeyRequestsEnabled: (enabled: boolean) => run(() => engine.setKeyRequestsEnabled(enabled)),
    prepareKeyForwarding: (deviceIds: string[]) => run(() => engine.prepareKeyForwarding(deviceIds)),
    answerKeyRequests: (requests) => run(() => engine.answerKeyRequests(requests)),
    exportKeysToFile: (path, passphrase, rounds, onProgress) => run(() => exportKeysToFile(engine, path, passphrase, rounds, onProgress)),
    // Not wrapped in one run(): each batch is its own queued call, so syncs interleave with a long import.
    importKeysFromFile: async (path, passphrase, onProgress) => {
      try {
        return { ok: true as const, value: await importKeysFromFile((batch) => unwrap(run(() => engine.importRoomKeys(batch))), path, passphrase, onProgress) };
      } catch (err) {
        return { ok: false as const, error: serializeError(err) };
      }
    },
    getDevices: (userId: string) => run(() => engine.getDevices(userId)),
    setDeviceFlags: (userId, deviceId, flags) => run(() => engine.setDeviceFlags(userId, deviceId, flags)),
    requestVerification: (userId, deviceIds) => run(() => engine.requestVerification(userId, deviceIds)),
    roomVerificationRequestContent: (userId) => run(() => engine.roomVerificationRequestContent(userId)),
    roomVerificationRequestSent: (roomId, eventId, userId) => run(() => engine.roomVerificationRequestSent(roomId, eventId, userId)),
    verificationAction: (flowId, action) => run(() => engine.verificationAction(flowId, action)),
    receiveVerificationEvent: (sender, type, contentJson, where) => run(() => engine.receiveVerificationEvent(sender, type, contentJson, where)),
    verificationTick: () => run(() => engine.verificationTick()),
    getVerification: (flowId) => run(() => engine.getVerification(flowId)),
    keyBackupStatus: (info) => run(() => engine.keyBackupStatus(info)),
    createKeyBackup: (ss) => run(() => engine.createKeyBackup(ss)),
    unlockKeyBackup: (info, source) => run(() => engine.unlockKeyBackup(info, source)),
    activateKeyBackup: (info) => run(() => engine.activateKeyBackup(info)),
    keyBackupBatch: (limit) => run(() => engine.keyBackupBatch(limit)),
    keyBackupBatchDone: (id, ok) => run(() => engine.keyBackupBatchDone(id, ok)),
    importBackupSessions: (info, keysJson) => run(() => engine.importBackupSessions(info, JSON.parse(keysJson) as Record<string, unknown>)),
    answerSecretRequests: (requests) => run(() => engine.answerSecretRequests(requests)),
    requestSecrets: () => run(() => engine.requestSecrets()),
    crashForTesting: (how: "throw" | "exit") =>
      run(() => {
        if (how === "exit") process.exit(3);
        setImmediate(() => {
          throw new Error("crash requested for testing");
        });
      }),
    close: () =>
      run(async () => {
        if (closed) return;
        closed = true;
        await engine.close();
        await store.close();
      }),
  } satisfies WorkerFacade);

  Comlink.expose(facade, nodeEndpoint(port as unknown as Parameters<typeof nodeEndpoint>[0]));
  port.postMessage({ __sdk: "ready", protocolVersion: PROTOCOL_VERSION, location: store.location });
}

void main().catch((err: unknown) => {
  parentPort?.postMessage({ __sdk: "init-error", error: serializeError(err) });
});
