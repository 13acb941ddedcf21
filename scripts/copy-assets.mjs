// Copies the non-TypeScript files the compiled package reads at run time (the SQLite store's
// numbered `.sql` migrations) from the source tree into dist/, at the same relative paths, after
// `tsc` (which copies only what it compiles). Run by `npm run build`; no dependencies.
//
// Stale copies of deleted assets are removed first, so dist/ holds exactly the source's set.
import { copyFileSync, existsSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
/** Folders whose files of these endings are copied, relative to the repository root. */
const ASSET_DIRS = [{ dir: "workers/store/sqlite/migrations", endings: [".sql"] }];

let copied = 0;
for (const { dir, endings } of ASSET_DIRS) {
  const from = join(root, dir);
  const to = join(root, "dist", dir);
  if (!existsSync(from)) throw new Error(`copy-assets: ${dir} does not exist`);
  rmSync(to, { recursive: true, force: true });
  mkdirSync(to, { recursive: true });
  for (const name of readdirSync(from).sort()) {
    if (!endings.some((e) => name.endsWith(e))) continue;
    copyFileSync(join(from, name), join(to, name));
    copied++;
  }
  if (!readdirSync(to).length) throw new Error(`copy-assets: no ${endings.join("/")} files in ${dir}`);
  console.log(`copy-assets: ${relative(root, from)} -> ${relative(root, to)}`);
}
console.log(`copy-assets: ${copied} file(s)`);
