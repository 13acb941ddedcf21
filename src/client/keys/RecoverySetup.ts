/**
 * The one-call setup for bots: cross-signing, secret storage and key backup created on first run,
 * restored on a fresh store with the recovery key.
 * @internal
 */
import { InvalidArgumentError } from "../../protocol/errors.js";
import { redactedInspect, inspectCustom, REDACTED, type InspectFn } from "../../pure/secret.js";
import { CrossSigningBootstrapResult, type CrossSigningManager } from "./CrossSigningManager.js";
import type { KeyBackupManager } from "./KeyBackupManager.js";

/** What `MatrixClient.setupRecovery` resolves with; the recovery key is redacted when inspected or serialised. */
export class RecoverySetupResult extends CrossSigningBootstrapResult {
  /**
   * @param recoveryKey - The recovery key (new on first run, else the one given).
   * @param created - Cross-signing, secret storage and backup were created now (first run).
   * @param restoredKeys - Room keys restored from the backup (0 on first run).
   * @param backupVersion - The key backup version uploaded to.
   */
  constructor(
    recoveryKey: string,
    readonly created: boolean,
    readonly restoredKeys: number,
    readonly backupVersion: string,
  ) {
    super(recoveryKey);
  }

  /** What `JSON.stringify` shows: everything but the recovery key. */
  override toJSON(): { recoveryKey: string; created: boolean; restoredKeys: number; backupVersion: string } {
    return { recoveryKey: REDACTED, created: this.created, restoredKeys: this.restoredKeys, backupVersion: this.backupVersion };
  }

  /** What `util.inspect` shows: the recovery key redacted. */
  override [inspectCustom](_depth: number, options: object, inspect: InspectFn): string {
    return redactedInspect("RecoverySetupResult", this.toJSON(), options, inspect);
  }
}

/** See `MatrixClient.setupRecovery`. @internal */
export async function setupRecovery(crossSigning: CrossSigningManager, backup: KeyBackupManager, userId: string, opts: { recoveryKey?: string; password?: string }): Promise<RecoverySetupResult> {
  await crossSigning.refreshUserKeys(userId);
  const identity = await crossSigning.getUserIdentity(userId);
  if (!identity.masterKey) {
    // First run: nothing on the account yet.
    const { recoveryKey } = await crossSigning.bootstrap(opts.password ? { password: opts.password } : {});
    const info = await backup.enable({ recoveryKey });
    return new RecoverySetupResult(recoveryKey, true, 0, info.version);
  }
  if (!opts.recoveryKey) throw new InvalidArgumentError("this account already has a cross-signing identity: pass its recovery key");
  const recoveryKey = opts.recoveryKey;
  if (!identity.verified) await crossSigning.restore({ recoveryKey });
  // Uploads resume (or start: no backup yet), then the room keys are restored; restored sessions
  // count as backed up in that version and are not uploaded again.
  const hadBackup = (await backup.serverVersion()) !== null;
  const info = await backup.enable({ recoveryKey });
  const restored = hadBackup ? (await backup.restore({ recoveryKey }, {})).imported : 0;
  return new RecoverySetupResult(recoveryKey, false, restored, info.version);
}
