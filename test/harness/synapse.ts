/**
 * Test harness that runs a real Synapse homeserver for integration tests.
 *
 * Synapse is installed from PyPI into a git-ignored virtualenv
 * (`<repo>/.cache/synapse-venv`, or `$SYNAPSE_VENV`) on first use, then each
 * {@link startSynapse} call runs a private, throw-away homeserver on a free
 * port of 127.0.0.1 with an SQLite database in a temporary directory.
 *
 * Environment variables:
 * - `SYNAPSE_VENV`: virtualenv location (default `<repo>/.cache/synapse-venv`).
 * - `SYNAPSE_VERSION`: Synapse version to install (default {@link DEFAULT_SYNAPSE_VERSION}).
 * - `SYNAPSE_PYTHON`: Python interpreter used to create the virtualenv (default: first of
 *   `python3`, `python3.13` … `python3.10`, `python` that is >= 3.10).
 * - `SYNAPSE_START_TIMEOUT_MS`: how long to wait for a server to answer (default 90000).
 * - `KEEP_SYNAPSE`: when set (non-empty), `stop()` keeps the server directory for inspection.
 *
 * @module
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createHmac, generateKeyPairSync, randomBytes } from "node:crypto";
import { createWriteStream, existsSync, readFileSync, type WriteStream } from "node:fs";
import { mkdir, mkdtemp, open, readFile, rename, rm, stat, unlink, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";

/** Synapse version installed when `SYNAPSE_VERSION` is not set. */
export const DEFAULT_SYNAPSE_VERSION = "1.163.2";

/** Oldest Python (major, minor) that current Synapse releases support. */
const MIN_PYTHON: readonly [number, number] = [3, 10];

/** Repository root: this file compiles to `<repo>/dist/test/harness/synapse.js`. */
const REPO_ROOT = fileURLToPath(new URL("../../../", import.meta.url));

/** Name of the file, inside the venv, recording the Synapse version installed there. */
const MARKER_NAME = ".synapse-installed";

/** A user created with {@link SynapseHandle.registerUser}. */
export interface RegisteredUser {
  /** Fully qualified Matrix user ID, e.g. `@alice:localhost`. */
  userId: string;
  /** Access token of the device created by the registration. */
  accessToken: string;
  /** Device ID of the device created by the registration. */
  deviceId: string;
}

/** Options of {@link startSynapse}. */
export interface StartSynapseOptions {
  /**
   * Directory for Synapse's log files (`homeserver.log`, `synapse.out.log`). Created if missing
   * and never deleted, so logs survive {@link SynapseHandle.stop}. Default: the server's
   * temporary directory (deleted on stop unless `KEEP_SYNAPSE` is set).
   */
  logDir?: string;
}

/** Options of {@link SynapseHandle.restart}. */
export interface RestartOptions {
  /** Milliseconds to keep the server down (connections refused) before starting it again. Default 0. */
  downtimeMs?: number;
}

/** A running Synapse homeserver started by {@link startSynapse}. */
export interface SynapseHandle {
  /** Base URL of the client-server API, e.g. `http://127.0.0.1:41234` (no trailing slash). */
  readonly baseUrl: string;
  /** The homeserver's server name (`localhost`): user IDs look like `@alice:localhost`. */
  readonly serverName: string;
  /** TCP port the server listens on (127.0.0.1 only); stays the same across restarts. */
  readonly port: number;
  /** Temporary directory holding the config, signing key, SQLite database and media store. */
  readonly dir: string;
  /** Path of Synapse's log file (WARNING level and above). */
  readonly logFile: string;
  /**
   * Registers a user through the shared-secret admin registration API
   * (`/_synapse/admin/v1/register`) and returns its ID and a fresh device's access token.
   *
   * @param localpart - localpart of the user ID (`alice` gives `@alice:localhost`).
   * @param password - the account password (usable with `/login`).
   * @param admin - whether the user is a server admin (default false).
   */
  registerUser(localpart: string, password: string, admin?: boolean): Promise<RegisteredUser>;
  /**
   * Stops the server (SIGTERM, SIGKILL after 10 s) and deletes {@link SynapseHandle.dir}
   * unless `KEEP_SYNAPSE` is set. Idempotent.
   */
  stop(): Promise<void>;
  /**
   * Stops the server process and starts it again with the same directory, port and database,
   * resolving once it answers requests again. For fault-injection tests.
   */
  restart(opts?: RestartOptions): Promise<void>;
  /** The last lines of Synapse's log file and stdout/stderr, for diagnostics. */
  logTail(lines?: number): string;
}

// ---------------------------------------------------------------------------------------------
// Installation
// ---------------------------------------------------------------------------------------------

/** Result of running a command to completion. */
interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs a command, capturing its output; rejects only if it cannot be spawned or times out. */
function run(cmd: string, args: readonly string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], env: opts.env ?? process.env });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    const timer =
      opts.timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            child.kill("SIGKILL");
            reject(new Error(`${cmd} ${args.join(" ")} timed out after ${opts.timeoutMs} ms\n${tail(stdout + stderr, 40)}`));
          }, opts.timeoutMs);
    child.on("error", (err) => {
      if (timer) clearTimeout(timer);
      reject(err);
    });
    child.on("close", (code, signal) => {
      if (timer) clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Last `n` non-empty lines of `text`. */
function tail(text: string, n: number): string {
  const lines = text.split("\n").filter((l) => l.trim() !== "");
  return lines.slice(-n).join("\n");
}

/** Location of the Synapse virtualenv (`$SYNAPSE_VENV` or `<repo>/.cache/synapse-venv`). */
function venvDir(): string {
  const fromEnv = process.env["SYNAPSE_VENV"];
  return fromEnv ? fromEnv : join(REPO_ROOT, ".cache", "synapse-venv");
}

/** Python interpreter inside a virtualenv. */
function venvPython(venv: string): string {
  return process.platform === "win32" ? join(venv, "Scripts", "python.exe") : join(venv, "bin", "python");
}

/** Finds a Python >= 3.10 to create the virtualenv with, or throws a clear error. */
async function findBasePython(): Promise<string> {
  const explicit = process.env["SYNAPSE_PYTHON"];
  const candidates = explicit ? [explicit] : ["python3", "python3.13", "python3.12", "python3.11", "python3.10", "python"];
  const seen: string[] = [];
  for (const cand of candidates) {
    let r: RunResult;
    try {
      r = await run(cand, ["-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"], { timeoutMs: 30_000 });
    } catch {
      continue; // not installed
    }
    const version = r.stdout.trim();
    const m = /^(\d+)\.(\d+)\.\d+$/.exec(version);
    if (r.code !== 0 || !m) continue;
    seen.push(`${cand} ${version}`);
    const major = Number(m[1]);
    const minor = Number(m[2]);
    if (major > MIN_PYTHON[0] || (major === MIN_PYTHON[0] && minor >= MIN_PYTHON[1])) return cand;
  }
  throw new Error(
    `Synapse needs Python >= ${MIN_PYTHON.join(".")}, but ` +
      (seen.length ? `only found: ${seen.join(", ")}` : `no Python interpreter was found (tried ${candidates.join(", ")})`) +
      ". Install Python 3.10+ or point SYNAPSE_PYTHON at one.",
  );
}

/** Version of the `synapse` package importable by `python`, or undefined if it cannot be imported. */
async function importedSynapseVersion(python: string): Promise<string | undefined> {
  if (!existsSync(python)) return undefined;
  try {
    const r = await run(python, ["-c", "import synapse; print(synapse.__version__)"], { timeoutMs: 60_000 });
    // Inside a git checkout Synapse appends build info ("1.163.2 (b=main,6e4682a)"): keep the version.
    return r.code === 0 ? r.stdout.trim().split(/\s+/)[0] : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Returns the version of Synapse installed for the harness (by {@link ensureSynapseInstalled}).
 *
 * @param python - interpreter to ask; default: the harness virtualenv's Python.
 * @throws if Synapse cannot be imported by that interpreter.
 */
export async function getSynapseVersion(python: string = venvPython(venvDir())): Promise<string> {
  const v = await importedSynapseVersion(python);
  if (v === undefined) throw new Error(`Synapse is not importable by ${python}; call ensureSynapseInstalled() first`);
  return v;
}

/** Whether a process with this pid exists (on this machine). */
function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Runs `fn` while holding an exclusive lock file, so concurrent test processes do not install
 * into the same venv at once. A lock whose owner process is gone (or older than 30 min) is
 * considered stale and taken over.
 */
async function withLock<T>(lockPath: string, fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + 20 * 60_000;
  let announced = false;
  for (;;) {
    try {
      const fh = await open(lockPath, "wx");
      await fh.writeFile(`${process.pid}\n`);
      await fh.close();
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    }
    let stale = false;
    try {
      const [content, st] = await Promise.all([readFile(lockPath, "utf8"), stat(lockPath)]);
      const pid = Number.parseInt(content, 10);
      // An empty file may be a lock being written right now: only stale once old.
      stale = (Number.isFinite(pid) && pid > 0 && !pidAlive(pid)) || Date.now() - st.mtimeMs > 30 * 60_000;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") continue; // released meanwhile
      throw e;
    }
    if (stale) {
      await unlink(lockPath).catch(() => undefined);
      continue;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for install lock ${lockPath}`);
    if (!announced) {
      process.stderr.write(`[synapse-harness] waiting for another process to finish installing Synapse (${lockPath})\n`);
      announced = true;
    }
    await sleep(500);
  }
  try {
    return await fn();
  } finally {
    await unlink(lockPath).catch(() => undefined);
  }
}

/**
 * Makes sure Synapse is installed in the harness virtualenv and returns the path of that
 * virtualenv's Python interpreter.
 *
 * The virtualenv lives in `<repo>/.cache/synapse-venv` (git-ignored) unless `SYNAPSE_VENV` says
 * otherwise. The first call creates it with `python -m venv` and runs
 * `pip install matrix-synapse==<version>` (version: `SYNAPSE_VERSION`, default
 * {@link DEFAULT_SYNAPSE_VERSION}); a marker file recording the installed version makes later
 * calls return immediately. A lock file next to the venv serialises concurrent installers.
 *
 * @returns absolute path of the venv's `python`.
 * @throws if no Python >= 3.10 is available or the installation fails (the message includes
 *   the tail of pip's output).
 */
export async function ensureSynapseInstalled(): Promise<string> {
  const venv = venvDir();
  const python = venvPython(venv);
  const marker = join(venv, MARKER_NAME);
  const wanted = process.env["SYNAPSE_VERSION"] || DEFAULT_SYNAPSE_VERSION;
  const markerOk = (): boolean => {
    try {
      return readFileSync(marker, "utf8").trim() === wanted && existsSync(python);
    } catch {
      return false;
    }
  };
  if (markerOk()) return python;

  await mkdir(dirname(venv), { recursive: true });
  return withLock(`${venv}.lock`, async () => {
    if (markerOk()) return python; // another process installed it while we waited

    if ((await importedSynapseVersion(python)) !== wanted) {
      const started = Date.now();
      process.stderr.write(`[synapse-harness] installing Synapse ${wanted} from PyPI into ${venv} ...\n`);
      if (!existsSync(python)) {
        const base = await findBasePython();
        const r = await run(base, ["-m", "venv", venv], { timeoutMs: 5 * 60_000 });
        if (r.code !== 0 || !existsSync(python)) {
          throw new Error(
            `creating the Synapse virtualenv with \`${base} -m venv ${venv}\` failed (exit ${r.code}). ` +
              `On Debian/Ubuntu install the python3-venv package.\n${tail(r.stdout + r.stderr, 40)}`,
          );
        }
      }
      const check = await run(python, ["-c", "import sys; print(sys.version_info >= (3, 10))"], { timeoutMs: 30_000 });
      if (check.stdout.trim() !== "True") {
        throw new Error(`the Python in ${venv} is older than ${MIN_PYTHON.join(".")}; delete that directory or set SYNAPSE_PYTHON`);
      }
      const env = { ...process.env, PIP_NO_INPUT: "1", PIP_DISABLE_PIP_VERSION_CHECK: "1" };
      const pip = await run(python, ["-m", "pip", "install", "--no-input", "--disable-pip-version-check", `matrix-synapse==${wanted}`], {
        timeoutMs: 20 * 60_000,
        env,
      });
      if (pip.code !== 0) {
        throw new Error(`pip install matrix-synapse==${wanted} failed (exit ${pip.code}):\n${tail(pip.stdout + pip.stderr, 60)}`);
      }
      const got = await importedSynapseVersion(python);
      if (got !== wanted) throw new Error(`after pip install, Synapse version is ${String(got)}, expected ${wanted}`);
      process.stderr.write(`[synapse-harness] Synapse ${wanted} installed in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
    }
    // Write the marker atomically: readers see either nothing or the complete version.
    const tmp = `${marker}.${process.pid}.tmp`;
    await writeFile(tmp, `${wanted}\n`);
    await rename(tmp, marker);
    return python;
  });
}

// ---------------------------------------------------------------------------------------------
// Server lifecycle
// ---------------------------------------------------------------------------------------------

/** Server name of every harness homeserver; user IDs look like `@alice:localhost`. */
const SERVER_NAME = "localhost";

/** Rate-limit settings that never trigger. */
const UNLIMITED = { per_second: 1_000_000, burst_count: 1_000_000 };

/**
 * Python bootstrap that runs Synapse's homeserver module but exits as soon as its parent
 * (the Node test process) goes away, even if that process was SIGKILLed.
 */
const BOOTSTRAP = `# Runs synapse.app.homeserver; exits when the parent (Node) process goes away.
import os, sys, threading, time, runpy
_parent = os.getppid()
def _watch():
    while True:
        time.sleep(0.5)
        if os.getppid() != _parent:
            os._exit(3)
threading.Thread(target=_watch, name="parent-watch", daemon=True).start()
sys.argv = ["synapse.app.homeserver"] + sys.argv[1:]
runpy.run_module("synapse.app.homeserver", run_name="__main__", alter_sys=True)
`;

/** Children still running, killed synchronously if the Node process exits. */
const liveChildren = new Set<ChildProcess>();
let exitHookInstalled = false;
function trackChild(child: ChildProcess): void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on("exit", () => {
      for (const c of liveChildren) {
        try {
          c.kill("SIGKILL");
        } catch {
          /* already gone */
        }
      }
    });
  }
  liveChildren.add(child);
  child.once("exit", () => liveChildren.delete(child));
}

/** Asks the OS for a currently free TCP port on 127.0.0.1. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => (port ? resolve(port) : reject(new Error("could not get a free port"))));
    });
  });
}

/** Synapse's signing key file format: `ed25519 <key id> <unpadded base64 seed>`. */
function generateSigningKey(): string {
  const der = generateKeyPairSync("ed25519").privateKey.export({ format: "der", type: "pkcs8" });
  const seed = der.subarray(der.length - 32); // PKCS#8 ed25519: the 32-byte seed comes last
  const keyId = "a_" + randomBytes(3).toString("base64url").replace(/[^A-Za-z0-9]/g, "x").slice(0, 4);
  return `ed25519 ${keyId} ${seed.toString("base64").replace(/=+$/, "")}\n`;
}

/** Python logging config writing WARNING and above to `logFile`. */
function logConfig(logFile: string): string {
  return [
    "version: 1",
    "formatters:",
    "  precise:",
    "    format: '%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s'",
    "handlers:",
    "  file:",
    "    class: logging.FileHandler",
    "    formatter: precise",
    `    filename: ${JSON.stringify(logFile)}`,
    "    encoding: utf8",
    "loggers:",
    "  synapse.storage.SQL:",
    "    level: WARNING",
    "root:",
    "  level: WARNING",
    "  handlers: [file]",
    "disable_existing_loggers: false",
    "",
  ].join("\n");
}

/** The homeserver config (JSON is valid YAML, so it is written as JSON). */
function homeserverConfig(dir: string, port: number, logConfigPath: string, sharedSecret: string): Record<string, unknown> {
  return {
    server_name: SERVER_NAME,
    public_baseurl: `http://127.0.0.1:${port}/`,
    pid_file: join(dir, "homeserver.pid"),
    listeners: [
      {
        port,
        bind_addresses: ["127.0.0.1"],
        type: "http",
        tls: false,
        x_forwarded: false,
        resources: [{ names: ["client"], compress: false }],
      },
    ],
    database: { name: "sqlite3", args: { database: join(dir, "homeserver.db") } },
    log_config: logConfigPath,
    media_store_path: join(dir, "media_store"),
    max_upload_size: "50M",
    signing_key_path: join(dir, "signing.key"),
    registration_shared_secret: sharedSecret,
    macaroon_secret_key: randomBytes(32).toString("hex"),
    form_secret: randomBytes(32).toString("hex"),
    enable_registration: false,
    report_stats: false,
    enable_metrics: false,
    suppress_key_server_warning: true,
    trusted_key_servers: [],
    federation_domain_whitelist: [],
    presence: { enabled: false },
    url_preview_enabled: false,
    // Rate limits: make every limiter effectively unlimited (tests hammer the server).
    rc_message: UNLIMITED,
    rc_registration: UNLIMITED,
    rc_registration_token_validity: UNLIMITED,
    rc_login: { address: UNLIMITED, account: UNLIMITED, failed_attempts: UNLIMITED },
    rc_admin_redaction: UNLIMITED,
    rc_joins: { local: UNLIMITED, remote: UNLIMITED },
    rc_joins_per_room: UNLIMITED,
    rc_key_requests: UNLIMITED,
    rc_3pid_validation: UNLIMITED,
    rc_invites: { per_room: UNLIMITED, per_user: UNLIMITED, per_issuer: UNLIMITED },
    rc_third_party_invite: UNLIMITED,
    rc_media_create: UNLIMITED,
    rc_presence: { per_user: UNLIMITED },
    rc_delayed_event_mgmt: UNLIMITED,
    rc_room_creation: UNLIMITED,
    rc_reports: UNLIMITED,
    rc_user_directory: UNLIMITED,
    rc_profile: UNLIMITED,
  };
}

/** Start timeout in ms (`SYNAPSE_START_TIMEOUT_MS`, default 90 s). */
function startTimeoutMs(): number {
  const v = Number(process.env["SYNAPSE_START_TIMEOUT_MS"]);
  return Number.isFinite(v) && v > 0 ? v : 90_000;
}

/** Implementation of {@link SynapseHandle}. */
class SynapseServer implements SynapseHandle {
  readonly serverName = SERVER_NAME;
  readonly baseUrl: string;
  readonly logFile: string;
  private readonly outFile: string;
  private readonly configPath: string;
  private child: ChildProcess | undefined;
  private out: WriteStream | undefined;
  private outTail: string[] = [];
  private stopped = false;
  private busy: Promise<void> = Promise.resolve();

  constructor(
    private readonly python: string,
    readonly dir: string,
    readonly port: number,
    private readonly sharedSecret: string,
    logDir: string,
    private readonly ownsLogDir: boolean,
  ) {
    this.baseUrl = `http://127.0.0.1:${port}`;
    this.logFile = join(logDir, "homeserver.log");
    this.outFile = join(logDir, "synapse.out.log");
    this.configPath = join(dir, "homeserver.yaml");
  }

  /** Writes config, log config and signing key into {@link dir}. */
  async writeConfig(): Promise<void> {
    const logConfigPath = join(this.dir, "log.config.yaml");
    await writeFile(logConfigPath, logConfig(this.logFile));
    await writeFile(join(this.dir, "signing.key"), generateSigningKey(), { mode: 0o600 });
    await mkdir(join(this.dir, "media_store"), { recursive: true });
    await writeFile(join(this.dir, "run_synapse.py"), BOOTSTRAP);
    const cfg = homeserverConfig(this.dir, this.port, logConfigPath, this.sharedSecret);
    await writeFile(this.configPath, `# Generated by test/harness/synapse.ts (JSON is YAML)\n${JSON.stringify(cfg, null, 2)}\n`);
  }

  logTail(lines = 60): string {
    let log = "";
    try {
      log = readFileSync(this.logFile, "utf8");
    } catch {
      /* not written yet */
    }
    const parts: string[] = [];
    const logTail = tail(log, lines);
    if (logTail) parts.push(`--- ${this.logFile} (tail) ---\n${logTail}`);
    const outTail = tail(this.outTail.join(""), lines);
    if (outTail) parts.push(`--- synapse stdout/stderr (tail) ---\n${outTail}`);
    return parts.length ? parts.join("\n") : "(Synapse wrote no log output)";
  }

  /** Spawns Synapse and resolves once `/_matrix/client/versions` answers. */
  async startProcess(): Promise<void> {
    this.outTail = [];
    this.out = createWriteStream(this.outFile, { flags: "a" });
    const child = spawn(this.python, [join(this.dir, "run_synapse.py"), "-c", this.configPath], {
      cwd: this.dir,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, PYTHONUNBUFFERED: "1" },
    });
    this.child = child;
    trackChild(child);
    const onData = (chunk: Buffer): void => {
      this.out?.write(chunk);
      this.outTail.push(chunk.toString("utf8"));
      if (this.outTail.length > 400) this.outTail.splice(0, this.outTail.length - 200);
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    let spawnError: Error | undefined;
    child.on("error", (e) => (spawnError = e));

    const started = Date.now();
    const deadline = started + startTimeoutMs();
    for (;;) {
      if (spawnError) throw new Error(`could not start Synapse (${this.python}): ${spawnError.message}`);
      if (child.exitCode !== null || child.signalCode !== null) {
        // Let stdout/stderr drain ('close' follows 'exit' once the pipes are empty).
        await Promise.race([new Promise<void>((r) => child.once("close", () => r())), sleep(1_000)]);
        throw new Error(
          `Synapse exited during startup (code ${child.exitCode}, signal ${child.signalCode}); dir ${this.dir}\n${this.logTail()}`,
        );
      }
      if (Date.now() > deadline) {
        await this.killProcess();
        throw new Error(`Synapse did not answer on ${this.baseUrl} within ${startTimeoutMs()} ms; dir ${this.dir}\n${this.logTail()}`);
      }
      try {
        const res = await fetch(`${this.baseUrl}/_matrix/client/versions`, { signal: AbortSignal.timeout(2_000) });
        await res.arrayBuffer();
        if (res.ok) break;
      } catch {
        /* not listening yet */
      }
      await sleep(150);
    }
    // A running server must not keep the test process alive on its own (see sharedSynapse).
    child.unref();
    (child.stdout as { unref?: () => void } | null)?.unref?.();
    (child.stderr as { unref?: () => void } | null)?.unref?.();
  }

  /** SIGTERM the process, SIGKILL after 10 s; resolves once it has exited. */
  async killProcess(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (child && child.exitCode === null && child.signalCode === null) {
      child.ref(); // keep the event loop alive until the child is gone
      const exited = new Promise<void>((r) => child.once("exit", () => r()));
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(timer);
    }
    const out = this.out;
    this.out = undefined;
    if (out) await new Promise<void>((r) => out.end(r));
  }

  /** Serialises lifecycle operations. */
  private serial(op: () => Promise<void>): Promise<void> {
    const next = this.busy.then(op, op);
    this.busy = next.catch(() => undefined);
    return next;
  }

  stop(): Promise<void> {
    return this.serial(async () => {
      if (this.stopped) return;
      this.stopped = true;
      await this.killProcess();
      if (process.env["KEEP_SYNAPSE"]) {
        process.stderr.write(`[synapse-harness] KEEP_SYNAPSE set: kept ${this.dir}\n`);
      } else {
        await rm(this.dir, { recursive: true, force: true });
      }
    });
  }

  restart(opts: RestartOptions = {}): Promise<void> {
    return this.serial(async () => {
      if (this.stopped) throw new Error("restart() called on a stopped Synapse");
      await this.killProcess();
      if (opts.downtimeMs) await sleep(opts.downtimeMs);
      await this.startProcess();
    });
  }

  async registerUser(localpart: string, password: string, admin = false): Promise<RegisteredUser> {
    const url = `${this.baseUrl}/_synapse/admin/v1/register`;
    const nonceRes = await fetch(url);
    const nonceBody = (await nonceRes.json()) as { nonce?: unknown };
    if (!nonceRes.ok || typeof nonceBody.nonce !== "string") {
      throw new Error(`GET ${url} failed: ${nonceRes.status} ${JSON.stringify(nonceBody)}`);
    }
    const nonce = nonceBody.nonce;
    const mac = createHmac("sha1", this.sharedSecret)
      .update(nonce)
      .update("\0")
      .update(localpart)
      .update("\0")
      .update(password)
      .update("\0")
      .update(admin ? "admin" : "notadmin")
      .digest("hex");
    const res = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ nonce, username: localpart, password, admin, mac }),
    });
    const body = (await res.json()) as { user_id?: unknown; access_token?: unknown; device_id?: unknown };
    if (!res.ok || typeof body.user_id !== "string" || typeof body.access_token !== "string" || typeof body.device_id !== "string") {
      throw new Error(`registering ${localpart} failed: ${res.status} ${JSON.stringify(body)}`);
    }
    return { userId: body.user_id, accessToken: body.access_token, deviceId: body.device_id };
  }

  /** Whether the temp dir (and logs in it) should be removed on a failed start. */
  get cleanupOnFailure(): boolean {
    return !process.env["KEEP_SYNAPSE"] && this.ownsLogDir;
  }
}

/**
 * Starts a fresh Synapse homeserver for a test.
 *
 * The server runs from a new temporary directory (config, signing key, SQLite database, media
 * store), listens on a free port of 127.0.0.1 (HTTP, client + admin APIs only), has server name
 * `localhost` (user IDs `@alice:localhost`), open registration disabled, federation, presence
 * and URL previews off, and every rate limiter effectively disabled. Users are created with
 * {@link SynapseHandle.registerUser}. Synapse is installed on first use
 * (see {@link ensureSynapseInstalled}).
 *
 * The Synapse process is killed if the Node process exits, and exits by itself if the Node
 * process dies without cleaning up (it watches its parent pid). Call
 * {@link SynapseHandle.stop} when done.
 *
 * @param opts - see {@link StartSynapseOptions}.
 * @returns a handle once the server answers `GET /_matrix/client/versions` (waits up to 90 s).
 * @throws if Synapse fails to start; the message includes the tail of its log and stderr.
 */
export async function startSynapse(opts: StartSynapseOptions = {}): Promise<SynapseHandle> {
  const python = await ensureSynapseInstalled();
  let lastError: unknown;
  for (let attempt = 1; attempt <= 3; attempt++) {
    const dir = await mkdtemp(join(tmpdir(), "synapse-test-"));
    const logDir = opts.logDir ?? dir;
    await mkdir(logDir, { recursive: true });
    const port = await freePort();
    const server = new SynapseServer(python, dir, port, randomBytes(24).toString("hex"), logDir, opts.logDir === undefined);
    try {
      await server.writeConfig();
      await server.startProcess();
      return server;
    } catch (e) {
      lastError = e;
      await server.killProcess().catch(() => undefined);
      const portClash = /Address already in use|CannotListenError/.test(String(e));
      if (!portClash && process.env["KEEP_SYNAPSE"]) process.stderr.write(`[synapse-harness] KEEP_SYNAPSE set: kept ${dir}\n`);
      if (portClash || server.cleanupOnFailure) await rm(dir, { recursive: true, force: true });
      if (!portClash) throw e; // only a lost race for the port is worth retrying
    }
  }
  throw lastError;
}

let shared: Promise<SynapseHandle> | undefined;
let sharedHookInstalled = false;

/**
 * Returns a Synapse shared by every caller in this process, starting it on the first call.
 *
 * Test files run in separate processes (`node --test`), so each file gets its own server but
 * tests within a file share it; use distinct user localparts per test. The server is stopped
 * automatically when the process is about to exit (`beforeExit`); a test may also call
 * `stop()` itself, after which the next `sharedSynapse()` call starts a new one.
 *
 * @throws if Synapse fails to start (later calls retry).
 */
export function sharedSynapse(): Promise<SynapseHandle> {
  if (!shared) {
    const p = startSynapse().then((h): SynapseHandle => ({
      baseUrl: h.baseUrl,
      serverName: h.serverName,
      port: h.port,
      dir: h.dir,
      logFile: h.logFile,
      registerUser: (localpart, password, admin) => h.registerUser(localpart, password, admin),
      restart: (opts) => h.restart(opts),
      logTail: (lines) => h.logTail(lines),
      // If a test stops the shared server, forget it so the next caller gets a fresh one.
      stop: async () => {
        if (shared === p) shared = undefined;
        await h.stop();
      },
    }));
    shared = p;
    p.catch(() => {
      if (shared === p) shared = undefined;
    });
    if (!sharedHookInstalled) {
      sharedHookInstalled = true;
      process.on("beforeExit", () => {
        const current = shared;
        shared = undefined;
        if (current) void current.then((h) => h.stop()).catch(() => undefined);
      });
    }
  }
  return shared;
}
