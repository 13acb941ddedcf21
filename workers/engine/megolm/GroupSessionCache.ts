import type Olm from "@matrix-org/olm";
import type { InboundGroupSessionRecord } from "../../../src/protocol/store.js";

/** A live (unpickled) inbound Megolm session and the metadata decryption needs. @internal */
export interface LiveInboundSession {
  session: Olm.InboundGroupSession;
  record: InboundGroupSessionRecord;
  /** Replay records of this session seen in this process: message index → first sighting. */
  seen?: Map<number, { eventId: string; ts: number }>;
  /**
   * `seen` holds every replay record of the session (it was created in this process), so a miss
   * means "never seen" without asking the store.
   */
  complete?: boolean;
}

/**
 * Bounded LRU of live inbound Megolm sessions, so hot sessions are not unpickled per message.
 * Evicted sessions are freed (libolm objects live on the wasm heap).
 * @internal
 */
export class GroupSessionCache {
  private readonly map = new Map<string, LiveInboundSession>();
  constructor(private readonly capacity: number) {}

  static key(roomId: string, senderKey: string, sessionId: string): string {
    return `${roomId}\u0000${senderKey}\u0000${sessionId}`;
  }

  get(key: string): LiveInboundSession | undefined {
    const v = this.map.get(key);
    if (v) {
      this.map.delete(key);
      this.map.set(key, v);
    }
    return v;
  }

  set(key: string, v: LiveInboundSession): void {
    const old = this.map.get(key);
    if (old && old.session !== v.session) old.session.free();
    this.map.delete(key);
    this.map.set(key, v);
    while (this.map.size > this.capacity) {
      const first = this.map.keys().next().value as string;
      this.map.get(first)?.session.free();
      this.map.delete(first);
    }
  }

  get size(): number {
    return this.map.size;
  }

  clear(): void {
    for (const v of this.map.values()) v.session.free();
    this.map.clear();
  }
}
