/**
 * A bot that people can verify with emoji from Element ("Verify user" in a DM, or "Verify this
 * device"), for users on an allow-list. It logs the emoji for an operator, who compares them with
 * what the person sees and answers on the terminal.
 *
 *   MATRIX_HOMESERVER=https://matrix.example.org MATRIX_USER=@bot:example.org MATRIX_PASSWORD=… \
 *   MATRIX_VERIFY_ALLOW=@alice:example.org,@bob:example.org node dist/examples/verify-bot.js
 *
 * Requests from anyone else are cancelled. Without a terminal (stdin is not a TTY) nothing is
 * ever confirmed: the bot cancels after showing the emoji, as a careful operator would.
 */
import { createInterface } from "node:readline/promises";
import { MatrixClient, consoleLogger, type VerificationRequest } from "../src/index.js";

const { MATRIX_HOMESERVER, MATRIX_USER, MATRIX_PASSWORD, MATRIX_STORE_DIR, MATRIX_VERIFY_ALLOW } = process.env;
if (!MATRIX_HOMESERVER || !MATRIX_USER || !MATRIX_PASSWORD) {
  console.error("set MATRIX_HOMESERVER, MATRIX_USER (full user ID), MATRIX_PASSWORD and MATRIX_VERIFY_ALLOW (user IDs, comma-separated)");
  process.exit(2);
}
const allowed = new Set((MATRIX_VERIFY_ALLOW ?? "").split(",").map((s) => s.trim()).filter(Boolean));

const client = new MatrixClient(MATRIX_HOMESERVER, {
  encryption: true,
  restoreDeviceId: true,
  logger: consoleLogger("info"),
  ...(MATRIX_STORE_DIR ? { encryptionConf: { storeConf: { dbPath: MATRIX_STORE_DIR } } } : {}),
});

/** Ask the operator whether the emoji match (false without a terminal). */
async function operatorConfirms(question: string): Promise<boolean> {
  if (!process.stdin.isTTY) return false;
  const rl = createInterface({ input: process.stdin, output: process.stdout });
  try {
    return /^y(es)?$/i.test((await rl.question(question)).trim());
  } finally {
    rl.close();
  }
}

async function handle(req: VerificationRequest): Promise<void> {
  const who = `${req.otherUserId}${req.otherDeviceId ? ` (${req.otherDeviceId})` : ""}`;
  if (!allowed.has(req.otherUserId)) {
    console.log(`refusing a verification request from ${who}: not on the allow-list`);
    await req.cancel();
    return;
  }
  console.log(`verification request from ${who} over ${req.transport === "room" ? `room ${req.roomId}` : "to-device messages"}`);
  await req.accept();
  // Element starts SAS when its user picks "Verify by emoji"; start it ourselves if nobody has.
  const started = req.waitFor((r) => r.phase !== "ready").then(() => true, () => true);
  if (!(await Promise.race([started, new Promise<boolean>((r) => setTimeout(() => r(false), 10_000))]))) await req.startSas();
  const sas = await req.waitForSas();
  console.log(`emoji: ${sas.emoji?.map((e) => `${e.symbol} ${e.name}`).join(" | ") ?? "(not offered)"}`);
  console.log(`numbers: ${sas.decimal?.join(" ") ?? "(not offered)"}`);
  if (await operatorConfirms(`do ${who}'s emoji match these? [y/N] `)) await sas.confirm();
  else await sas.mismatch();
  const verified = await req.done;
  console.log(`verified ${verified.userId}${verified.deviceId ? ` device ${verified.deviceId}` : ""}${verified.masterKey ? " and their cross-signing identity" : ""}`);
}

client.on("verification.request", (req) => {
  handle(req).catch((e: unknown) => console.error(`verification with ${req.otherUserId} ended:`, e instanceof Error ? e.message : e));
});
client.on("room.invite", (roomId, inviter) => {
  if (inviter && allowed.has(inviter)) client.joinRoom(roomId).catch((e: unknown) => console.error(`could not join ${roomId}:`, e));
});

await client.login(MATRIX_USER, MATRIX_PASSWORD, { initialDeviceDisplayName: "verify bot" });
console.log(`logged in as ${client.userId} (${client.deviceId}), fingerprint ${client.getFingerprintForDisplay()}`);
client.start();
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.once(sig, () => {
    void client.close().then(() => process.exit(0));
  });
}
