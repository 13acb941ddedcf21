/**
 * A throw-away npm registry on 127.0.0.1 that serves the packages of a `node_modules` folder (the
 * repository's, which `npm ci` filled), so that a test can `npm install` the packed SDK tarball
 * into a fresh app with real npm (resolution, `.bin` links) and no network. Each package is served
 * in the version found there; its tarball is the installed folder as it is (native builds
 * included, so `--ignore-scripts` installs need no compiler; hard links are stored as files, since
 * npm skips link entries). Packages not found answer 404.
 */
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";

/** A running registry: its URL, and close(). */
export interface LocalRegistry {
  url: string;
  /** Package names whose packument was asked for. */
  served: string[];
  close(): Promise<void>;
}

/** Serve the packages of `nodeModules` as an npm registry. */
export async function startLocalRegistry(nodeModules: string): Promise<LocalRegistry> {
  const served: string[] = [];
  let base = "";
  const server: Server = createServer((req, res) => {
    const path = decodeURIComponent((req.url ?? "/").split("?")[0]!.slice(1));
    const tgz = /^(.+)\/-\/[^/]+-(\d[^/]*)\.tgz$/.exec(path);
    const name = tgz ? tgz[1]! : path;
    const dir = join(nodeModules, name);
    const pkgFile = join(dir, "package.json");
    if (!/^(@[a-z0-9._-]+\/)?[a-z0-9._-]+$/i.test(name) || !existsSync(pkgFile)) {
      res.writeHead(404, { "content-type": "application/json" }).end('{"error":"not found"}');
      return;
    }
    const pkg = JSON.parse(readFileSync(pkgFile, "utf8")) as Record<string, unknown> & { version: string };
    if (tgz) {
      res.writeHead(200, { "content-type": "application/octet-stream" });
      const tar = spawn("tar", ["-czf", "-", "--hard-dereference", "--exclude=./node_modules", "-C", dir, "--transform", "s,^\\.,package,", "."], { stdio: ["ignore", "pipe", "inherit"] });
      tar.stdout.pipe(res);
      return;
    }
    served.push(name);
    const version = { ...pkg, _id: `${name}@${pkg.version}`, dist: { tarball: `${base}/${name}/-/${name.split("/").pop()}-${pkg.version}.tgz` } };
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ name, "dist-tags": { latest: pkg.version }, versions: { [pkg.version]: version } }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url: base,
    served,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
