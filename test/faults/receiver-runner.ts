/**
 * A receiving client in its own process, for test/faults/process-crash.test.ts (which kills it
 * with SIGKILL at random points and starts it again).
 *
 * Environment: FAULT_HS (homeserver URL), FAULT_USER, FAULT_PASSWORD, FAULT_DB (store folder),
 * FAULT_ROOM (room to report). Logs in with `restoreDeviceId` on the persistent store, syncs, and
 * prints one JSON object per line on stdout:
 *   {"k":"ready","deviceId":…}                        logged in (the store opened)
 *   {"k":"ev","id":…,"body":…,"sid":…,"idx":…,"late":…} a decrypted m.room.message of FAULT_ROOM
 *   {"k":"utd","id":…,"code":…}                       an undecryptable event of FAULT_ROOM
 *   {"k":"limited"}                                   an incremental sync had a limited timeline
 *   {"k":"err","name":…,"code":…,"msg":…}             an `error` event
 *   {"k":"fatal","name":…,"code":…,"msg":…}           start-up failed (then exit code 2)
 */
import { MatrixClient, MatrixSdkError } from "../../src/index.js";
import { recordingAgent, type SyncLog } from "./helpers.js";

const env = (k: string): string => {
  const v = process.env[k];
  if (!v) throw new Error(`missing ${k}`);
  return v;
};

const out = (o: Record<string, unknown>): void => {
  process.stdout.write(JSON.stringify(o) + "\n");
};

const describeErr = (e: unknown): Record<string, unknown> => ({
  name: e instanceof Error ? e.name : "unknown",
  code: MatrixSdkError.isSdkError(e) ? e.code : null,
  msg: e instanceof Error ? e.message.slice(0, 300) : String(e),
});

async function main(): Promise<void> {
  const room = env("FAULT_ROOM");
  const log: SyncLog = { sinces: [], limited: 0, onLimited: () => out({ k: "limited" }) };
  const client = new MatrixClient(env("FAULT_HS"), {
    encryption: true,
    restoreDeviceId: true,
    encryptionConf: { storeConf: { dbPath: env("FAULT_DB") } },
    syncTimeoutMs: 2000,
    syncBackoff: { baseMs: 100, maxMs: 1000 },
    dispatcher: recordingAgent(log),
  });
  client.on("room.event", (e) => {
    if (e.roomId === room && e.type === "m.room.message") {
      out({ k: "ev", id: e.eventId, body: e.content.body, sid: e.encryption?.sessionId ?? null, idx: e.encryption?.messageIndex ?? null, late: e.lateDecryption === true });
    }
  });
  client.on("room.undecryptable", (e) => {
    if (e.roomId === room) out({ k: "utd", id: e.eventId, code: e.code });
  });
  client.on("error", (e) => out({ k: "err", ...describeErr(e) }));
  try {
    await client.login(env("FAULT_USER"), env("FAULT_PASSWORD"));
  } catch (e) {
    out({ k: "fatal", ...describeErr(e) });
    process.exit(2);
  }
  out({ k: "ready", deviceId: client.deviceId });
  client.start();
  process.on("SIGTERM", () => {
    void client.close().then(() => process.exit(0));
  });
}

main().catch((e: unknown) => {
  out({ k: "fatal", ...describeErr(e) });
  process.exit(2);
});
