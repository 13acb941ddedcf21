/**
 * matrix-e2ee-worker-sdk: a Matrix client whose end-to-end encryption (libolm) and crypto store
 * run in a dedicated worker thread.
 * @packageDocumentation
 */
export { MatrixClient } from "./client/MatrixClient.js";
export type { MatrixClientOptions, EncryptionConf, StoreConf, StateStoreConf } from "./client/options.js";
export type { KeyValueStore } from "./client/state/ClientStateStore.js";
export type { CreateRoomOptions } from "./client/rooms/RoomOperations.js";
export type { MessagesOptions, MessagesPage } from "./client/rooms/Room.js";
export type { ReplyTarget } from "./client/rooms/RoomMessages.js";
export type { AutoJoinPolicy } from "./client/rooms/AutoJoiner.js";
export { powerLevelsFrom, userPowerLevel, canSend } from "./client/rooms/RoomStateView.js";
export type { PowerLevels } from "./client/rooms/RoomStateView.js";
export type { UserProfile, Presence, PresenceState } from "./client/account/AccountEndpoints.js";
export { EverydayApi } from "./client/EverydayApi.js";
export type { KeyForwardListener, KeyRequestListener } from "./client/keys/KeySharingManager.js";
export { CrossSigningBootstrapResult } from "./client/keys/CrossSigningManager.js";
export { RecoverySetupResult } from "./client/keys/RecoverySetup.js";
export type { KeyBackupInfo, KeyBackupSecret } from "./client/keys/KeyBackupManager.js";
export { Room } from "./client/rooms/Room.js";
export type { RoomEncryptionSettings } from "./client/rooms/Room.js";
export { Device } from "./client/Device.js";
export { VerificationRequest } from "./client/verification/VerificationRequest.js";
export type { SasVerifier, VerificationRequestEvents } from "./client/verification/VerificationRequest.js";
export type { SasEmoji, VerificationPhase, VerificationTransport, VerifiedKeys } from "./protocol/verification.js";
export type { MatrixClientEvents, RoomEvent, UndecryptableEvent, ToDeviceEvent, SyncInfo, EventEncryptionInfo } from "./client/events.js";
export { userDataDir, APP_NAME } from "./client/paths.js";
export * from "./protocol/errors.js";
export {
  DecryptionFailureCode,
  VerificationStatus,
  OLM_ALGORITHM,
  MEGOLM_ALGORITHM,
  PROTOCOL_VERSION,
} from "./protocol/api.js";
export type { DecryptionFailureCodeValue, VerificationStatusValue, DeviceInfo, TrustableDevice, AccountInfo, IncomingKeyRequest, UserIdentityInfo, KeyBackupTrust } from "./protocol/api.js";
export type * from "./protocol/store.js";
export { HttpClient, makeTxnId, p } from "./http/HttpClient.js";
export type { HttpClientOptions, RequestOptions } from "./http/HttpClient.js";
export { consoleLogger, noopLogger } from "./pure/logger.js";
export type { Logger, LogLevel } from "./pure/logger.js";
export { Secret } from "./pure/secret.js";
export type { AttachmentInput, SendFileOptions } from "./client/media/media.js";
export { encryptAttachment, decryptAttachment, encryptAttachmentToFile, decryptAttachmentFile } from "./crypto/attachments.js";
export type { EncryptedFileInfo, EncryptedFileKey } from "./crypto/attachments.js";
export { encryptKeyExport, decryptKeyExport, DEFAULT_KEY_EXPORT_ROUNDS } from "./pure/keyExport.js";
export type { ExportedRoomKey } from "./pure/keyExport.js";
