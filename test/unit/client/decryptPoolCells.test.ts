/**
 * The decrypt pool's flat hand-off (src/protocol/pool.ts): what the main thread sends a decrypt
 * worker per event (its sender key, session ID and ciphertext, nothing else) and how it reads the
 * answer back (anything not of the answer's shape is left to the crypto worker, never trusted).
 * The round trip through real decrypt workers is in test/worker/decryptPool.test.ts.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { cipherRoom, decipheredOf } from "../../../src/client/sync/DecryptPool.js";
import { MEGOLM_ALGORITHM, type EncryptedEventInput } from "../../../src/protocol/api.js";
import { POOL_CELLS } from "../../../src/protocol/pool.js";

const megolm = (n: number): EncryptedEventInput => ({
  type: "m.room.encrypted",
  event_id: `$e${n}`,
  sender: "@alice:example.org",
  origin_server_ts: n,
  content: { algorithm: MEGOLM_ALGORITHM, ciphertext: `ct${n}`, session_id: `s${n}`, sender_key: `k${n}`, device_id: "A" },
});

describe("cipherRoom", () => {
  it("sends each Megolm event's sender key, session ID and ciphertext, in order", () => {
    assert.deepEqual(cipherRoom("!r:x", [megolm(1), megolm(2)]), { roomId: "!r:x", cells: ["k1", "s1", "ct1", "k2", "s2", "ct2"] });
  });

  it("keeps the place of an event it cannot send (another algorithm, no content, a non-string field) with empty cells", () => {
    const olm = { ...megolm(3), content: { ...megolm(3).content!, algorithm: "m.olm.v1.curve25519-aes-sha2" } };
    const noContent = { ...megolm(4), content: null };
    const numeric = { ...megolm(5), content: { ...megolm(5).content!, ciphertext: 5 } };
    const { cells } = cipherRoom("!r:x", [olm, noContent, numeric, megolm(6)]);
    assert.equal(cells.length, 4 * POOL_CELLS);
    assert.deepEqual(cells.slice(0, 9), ["", "", "", "", "", "", "", "", ""]);
    assert.deepEqual(cells.slice(9), ["k6", "s6", "ct6"]);
  });
});

describe("decipheredOf", () => {
  it("reads plaintext, index and type per event; an empty plaintext is left to the crypto worker", () => {
    assert.deepEqual(decipheredOf(['{"a":1}', 0, "m.room.message", "", -1, "", '{"b":2}', 7, "m.reaction"], 3), [
      { plaintextJson: '{"a":1}', messageIndex: 0, type: "m.room.message" },
      null,
      { plaintextJson: '{"b":2}', messageIndex: 7, type: "m.reaction" },
    ]);
  });

  it("leaves the whole room to the crypto worker when the answer does not have one entry per event", () => {
    assert.equal(decipheredOf(['{"a":1}', 0, "m.room.message"], 2), null);
    assert.equal(decipheredOf({ length: 3 }, 1), null);
    assert.equal(decipheredOf(null, 1), null);
  });

  it("leaves an event to the crypto worker when its index is not a message index or its cells are not strings", () => {
    const got = decipheredOf(["{}", -1, "t", "{}", 1.5, "t", "{}", "3", "t", 42, 3, "t", "{}", 3, null], 5);
    assert.deepEqual(got, [null, null, null, null, null]);
  });
});
