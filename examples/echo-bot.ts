/**
 * An encrypted echo bot for any homeserver.
 *
 *   MATRIX_HOMESERVER=https://matrix.example.org MATRIX_USER=@bot:example.org MATRIX_PASSWORD=… \
 *     node dist/examples/echo-bot.js
 *
 * It keeps its device ID and keys in MATRIX_STORE_DIR (default: the platform's data directory),
 * joins rooms it is invited to, and echoes text messages — encrypted in encrypted rooms.
 */
import { MatrixClient, consoleLogger } from "../src/index.js";

const { MATRIX_HOMESERVER, MATRIX_USER, MATRIX_PASSWORD, MATRIX_STORE_DIR } = process.env;
if (!MATRIX_HOMESERVER || !MATRIX_USER || !MATRIX_PASSWORD) {
  console.error("set MATRIX_HOMESERVER, MATRIX_USER (full user ID) and MATRIX_PASSWORD");
  process.exit(2);
}

const client = new MatrixClient(MATRIX_HOMESERVER, {
  encryption: true,
  restoreDeviceId: true,
  logger: consoleLogger("info"),
  ...(MATRIX_STORE_DIR ? { encryptionConf: { storeConf: { dbPath: MATRIX_STORE_DIR } } } : {}),
});

client.on("room.invite", (roomId) => {
  client.joinRoom(roomId).catch((e: unknown) => console.error(`could not join ${roomId}:`, e));
});
client.on("room.event", (ev) => {
  if (ev.type !== "m.room.message" || ev.sender === client.userId || ev.content.msgtype !== "m.text") return;
  const how = ev.encryption ? `encrypted, sender ${ev.encryption.verification}` : "plaintext";
  client
    .getRoom(ev.roomId)
    .sendNotice(`echo (${how}): ${String(ev.content.body)}`)
    .catch((e: unknown) => console.error("send failed:", e));
});
client.on("room.undecryptable", (ev) => console.warn(`cannot decrypt ${ev.eventId} in ${ev.roomId}: ${ev.code}`));

await client.login(MATRIX_USER, MATRIX_PASSWORD, { initialDeviceDisplayName: "echo bot" });
console.log(`logged in as ${client.userId} (${client.deviceId}), fingerprint ${client.getFingerprintForDisplay()}`);
client.start();
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.once(sig, () => {
    void client.close().then(() => process.exit(0));
  });
}
