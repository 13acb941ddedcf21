/** Room IDs and the configuration of the send benchmark's fixture server (shared by both processes). */
export interface SendServerConfig {
  userId: string;
  peerUserId: string;
  peerDevices: number;
  encryptedRooms: number;
  plainRooms: number;
}

/** The i-th encrypted room of the fixture. */
export const encryptedRoomId = (i: number): string => `!enc${i}:bench.local`;
/** The i-th plain room of the fixture. */
export const plainRoomId = (i: number): string => `!plain${i}:bench.local`;
