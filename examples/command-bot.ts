/**
 * A command bot for any homeserver: joins the rooms it is invited to (`autoJoin`) and answers
 * `!ping` and `!echo <text>` with replies (encrypted in encrypted rooms, the reply relation in the
 * clear so every client shows it as a reply).
 *
 *   MATRIX_HOMESERVER=https://matrix.example.org MATRIX_USER=@bot:example.org MATRIX_PASSWORD=… \
 *     node dist/examples/command-bot.js
 *
 * MATRIX_STORE_DIR: where the crypto store lives (default: the platform's data directory).
 * MATRIX_ADMINS: comma-separated user IDs whose invites are accepted (default: every invite).
 */
import { MatrixClient, consoleLogger, type Room, type RoomEvent } from "../src/index.js";

const { MATRIX_HOMESERVER, MATRIX_USER, MATRIX_PASSWORD, MATRIX_STORE_DIR, MATRIX_ADMINS } = process.env;
if (!MATRIX_HOMESERVER || !MATRIX_USER || !MATRIX_PASSWORD) {
  console.error("set MATRIX_HOMESERVER, MATRIX_USER (full user ID) and MATRIX_PASSWORD");
  process.exit(2);
}
const admins = MATRIX_ADMINS ? new Set(MATRIX_ADMINS.split(",").map((u) => u.trim())) : null;

/** A command handler: gets the room, the event and the text after the command word. */
type Command = (room: Room, ev: RoomEvent, args: string) => Promise<unknown>;

const commands: Record<string, Command> = {
  "!ping": (room, ev) => room.replyNotice(ev, "pong"),
  "!echo": (room, ev, args) => room.replyText(ev, args || "(nothing to echo)"),
};

const client = new MatrixClient(MATRIX_HOMESERVER, {
  encryption: true,
  restoreDeviceId: true,
  autoJoin: admins ? (_roomId, inviter) => inviter !== null && admins.has(inviter) : true,
  logger: consoleLogger("info"),
  ...(MATRIX_STORE_DIR ? { encryptionConf: { storeConf: { dbPath: MATRIX_STORE_DIR } } } : {}),
});

client.on("room.event", (ev) => {
  if (ev.type !== "m.room.message" || ev.sender === client.userId || typeof ev.content.body !== "string") return;
  if (ev.content["m.new_content"] !== undefined) return; // an edit, not a new command
  const text = ev.content.body.trim();
  const space = text.indexOf(" ");
  const name = space < 0 ? text : text.slice(0, space);
  const command = Object.hasOwn(commands, name) ? commands[name] : undefined;
  if (!command) return;
  command(client.getRoom(ev.roomId), ev, space < 0 ? "" : text.slice(space + 1).trim()).catch((e: unknown) => console.error(`${name} failed:`, e));
});
client.on("room.undecryptable", (ev) => console.warn(`cannot decrypt ${ev.eventId} in ${ev.roomId}: ${ev.code}`));
client.on("error", (err) => console.warn("error:", err.message));

await client.login(MATRIX_USER, MATRIX_PASSWORD, { initialDeviceDisplayName: "command bot" });
console.log(`logged in as ${client.userId} (${client.deviceId})`);
client.start();
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.once(sig, () => {
    void client.close().then(() => process.exit(0));
  });
}
