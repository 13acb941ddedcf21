/**
 * Where a benchmark run writes its results (issue 16 item 9): `--quick` never overwrites the
 * committed full-run results in bench/results/ that the README quotes.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { REPO_ROOT } from "../../bench/common.js";
import { parseArgs, resultsDir } from "../../bench/options.js";

describe("bench results folder", () => {
  it("a --quick run writes to bench/results/quick, a full run to bench/results, --out wins", () => {
    assert.equal(resultsDir(parseArgs(["--quick"])), join(REPO_ROOT, "bench", "results", "quick"));
    assert.equal(resultsDir(parseArgs([])), join(REPO_ROOT, "bench", "results"));
    assert.equal(resultsDir(parseArgs(["--quick", "--out", "/tmp/x"])), "/tmp/x");
  });
});
