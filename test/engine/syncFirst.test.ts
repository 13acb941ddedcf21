/**
 * `commitSyncToken`'s `syncFirst` (the client state store's WAL, written on the main thread
 * without waiting for the disk): the crypto worker syncs those files before it commits the token,
 * so the state store is never behind the token the client resumes from. A file that cannot be
 * synced commits nothing (the batch stays open: the same sync can commit once it can); a file
 * already gone is no error (SQLite removes its WAL only after checkpointing it).
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KeyServer, Peer } from "./helpers.js";
import { InvalidArgumentError, StoreError } from "../../src/protocol/errors.js";

describe("engine: files synced before the sync token", () => {
  it("commits after syncing the files; a file that cannot be synced commits nothing and leaves the batch to commit", async () => {
    const dir = mkdtempSync(join(tmpdir(), "sdk-syncfirst-"));
    try {
      const file = join(dir, "state.db-wal");
      writeFileSync(file, "x");
      const bob = await Peer.create(new KeyServer(), "@bob:example.org", "B");
      const s1 = await bob.sync();
      await bob.engine.commitSyncToken("t1", s1.batchId, [file, join(dir, "gone-wal")]);
      assert.equal(bob.engine.getSyncToken(), "t1");

      const s2 = await bob.sync();
      // A path through a regular file cannot be opened (ENOTDIR): StoreError, nothing committed.
      await assert.rejects(bob.engine.commitSyncToken("t2", s2.batchId, [join(file, "x")]), (e: unknown) => e instanceof StoreError && /before the sync token/.test(e.message));
      assert.equal(bob.engine.getSyncToken(), "t1");
      await bob.engine.commitSyncToken("t2", s2.batchId, [file]);
      assert.equal(bob.engine.getSyncToken(), "t2");

      const s3 = await bob.sync();
      await assert.rejects(bob.engine.commitSyncToken("t3", s3.batchId, [42 as unknown as string]), InvalidArgumentError);
      assert.equal(bob.engine.getSyncToken(), "t2");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
