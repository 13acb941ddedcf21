/**
 * Encrypted attachments end to end through a real Synapse, interoperating with matrix-sdk-crypto-wasm.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { writeFileSync, readFileSync } from "node:fs";
import { join } from "node:path";
import * as wasm from "@matrix-org/matrix-sdk-crypto-wasm";
import type { MatrixClient } from "../../src/index.js";
import type { SynapseHandle } from "../harness/synapse.js";
import { PASSWORD, Recorder, startClient, synapse, tempDir, uniqueName } from "./helpers.js";

describe("encrypted attachments through a real Synapse", { timeout: 180_000 }, () => {
  let hs: SynapseHandle;
  let a: { client: MatrixClient; rec: Recorder };
  let b: { client: MatrixClient; rec: Recorder };
  let roomId = "";
  before(async () => {
    await wasm.initAsync();
    hs = await synapse();
    const alice = (await hs.registerUser(uniqueName("atalice"), PASSWORD)).userId;
    const bob = (await hs.registerUser(uniqueName("atbob"), PASSWORD)).userId;
    a = await startClient(hs, alice, tempDir());
    b = await startClient(hs, bob, tempDir());
    const room = await a.client.createRoom({ encrypted: true, invite: [bob] });
    roomId = room.roomId;
    await b.rec.waitFor(() => b.client.getRooms().some((r) => r.roomId === roomId), "invite");
    await b.client.joinRoom(roomId);
    await a.rec.waitFor(() => a.rec.events.some((e) => e.type === "m.room.member" && e.stateKey === bob && e.content.membership === "join"), "join");
  });
  after(async () => {
    await Promise.all([a.client.close(), b.client.close()]);
  });

  it("sends an encrypted image (file, never url) that the other side downloads and decrypts", async () => {
    const image = randomBytes(300_000);
    const path = join(tempDir(), "cat.png");
    writeFileSync(path, image);
    await a.client.getRoom(roomId).sendImage(path, { mimetype: "image/png", info: { w: 10, h: 10 } });
    await b.rec.waitFor(() => b.rec.messages(roomId).some((e) => e.content.msgtype === "m.image"), "Bob receiving the image");
    const ev = b.rec.messages(roomId).find((e) => e.content.msgtype === "m.image")!;
    assert.equal(ev.content.url, undefined, "an encrypted room's event must not carry url");
    const file = ev.content.file as Record<string, unknown>;
    assert.equal(file.v, "v2");
    assert.equal((ev.content.info as Record<string, unknown>).size, image.length);
    assert.deepEqual(Buffer.from(await b.client.downloadAttachment(ev.content)), image);
    // An independent implementation decrypts the same upload with the same metadata.
    const out = join(tempDir(), "cipher");
    const raw = await fetch(`${hs.baseUrl}/_matrix/client/v1/media/download/${String(file.url).slice("mxc://".length)}`, { headers: { authorization: `Bearer ${b.client.accessToken}` } });
    writeFileSync(out, Buffer.from(await raw.arrayBuffer()));
    const { url: _u, ...info } = file;
    const theirs = wasm.Attachment.decrypt(new wasm.EncryptedAttachment(new Uint8Array(readFileSync(out)), JSON.stringify(info)));
    assert.deepEqual(Buffer.from(theirs), image);
  });

  it("refuses a tampered download with a typed error and sends plain files to plain rooms", async () => {
    const ev = b.rec.messages(roomId).find((e) => e.content.msgtype === "m.image")!;
    const file = { ...(ev.content.file as Record<string, unknown>), hashes: { sha256: "A".repeat(43) } };
    await assert.rejects(b.client.downloadAttachment({ ...ev.content, file }), (e: unknown) => (e as { code?: string }).code === "M_SDK_ATTACHMENT");
    const plain = await a.client.createRoom({ encrypted: false });
    await plain.sendFile(Buffer.from("hello"), { name: "hello.txt", mimetype: "text/plain" });
    await a.rec.waitFor(() => a.rec.events.some((e) => e.roomId === plain.roomId && e.content.msgtype === "m.file"), "plain file");
    const pe = a.rec.events.find((e) => e.roomId === plain.roomId && e.content.msgtype === "m.file")!;
    assert.equal(typeof pe.content.url, "string");
    assert.equal(Buffer.from(await a.client.downloadAttachment(pe.content)).toString(), "hello");
  });
});
