/**
 * SAS verification between two verification machines in one process (real libolm SAS objects):
 * the whole flow, tampering, cancellation codes, timeouts and stale requests.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import Olm from "@matrix-org/olm";
import { initOlm } from "../../support/olmPeer.js";
import { noopLogger } from "../../../src/pure/logger.js";
import type { VerificationMessage, VerificationFlowView } from "../../../src/protocol/verification.js";
import { VerificationMachine, FLOW_TIMEOUT_MS, type VerificationOutput } from "../../../workers/engine/verification/VerificationMachine.js";

type Json = Record<string, unknown>;

/** Keys every party knows (as if from /keys/query): `user|device` → ed25519, user → master key. */
class Directory {
  devices = new Map<string, string>();
  masters = new Map<string, string>();
}

class Party {
  readonly account = new Olm.Account();
  readonly ed25519: string;
  readonly machine: VerificationMachine;
  readonly views: VerificationFlowView[] = [];
  clock = { now: 1_700_000_000_000 };
  constructor(
    readonly userId: string,
    readonly deviceId: string,
    dir: Directory,
  ) {
    this.account.create();
    this.ed25519 = (JSON.parse(this.account.identity_keys()) as { ed25519: string }).ed25519;
    dir.devices.set(`${userId}|${deviceId}`, this.ed25519);
    this.machine = new VerificationMachine(
      Olm,
      new Olm.Utility(),
      () => ({ userId, deviceId, ed25519: this.ed25519 }),
      { deviceEd25519: (u, d) => dir.devices.get(`${u}|${d}`) ?? null, masterKey: (u) => dir.masters.get(u) ?? null },
      noopLogger,
      () => this.clock.now,
    );
  }
  last(flowId: string): VerificationFlowView {
    return this.machine.get(flowId)!;
  }
}

/** Delivers messages between parties until nothing is left; `tamper` may rewrite or drop a message. */
class Wire {
  readonly log: { from: string; type: string; content: Json }[] = [];
  constructor(
    readonly parties: Party[],
    readonly tamper: (m: VerificationMessage, from: Party) => VerificationMessage | null = (m) => m,
  ) {}
  pump(from: Party, out: VerificationOutput): void {
    from.views.push(...out.updates);
    const queue: [Party, VerificationMessage][] = out.messages.map((m) => [from, m]);
    while (queue.length) {
      const [src, raw] = queue.shift()!;
      const m = this.tamper(raw, src);
      if (!m) continue;
      this.log.push({ from: src.userId, type: m.type, content: m.content });
      for (const p of this.parties) {
        if (p === src) continue;
        const hit = m.transport === "to_device" ? m.userId === p.userId && m.deviceIds.includes(p.deviceId) : true;
        if (!hit) continue;
        const res = m.transport === "to_device" ? p.machine.handle(src.userId, m.type, m.content, { transport: "to_device" }) : p.machine.handle(src.userId, m.type, m.content, { transport: "room", roomId: m.roomId, eventId: `$ev${this.log.length}`, originServerTs: p.clock.now });
        p.views.push(...res.updates);
        for (const n of res.messages) queue.push([p, n]);
      }
    }
  }
}

async function pair(tamper?: (m: VerificationMessage, from: Party) => VerificationMessage | null): Promise<{ alice: Party; bob: Party; wire: Wire; dir: Directory }> {
  await initOlm();
  const dir = new Directory();
  const alice = new Party("@alice:example.org", "ALICE1", dir);
  const bob = new Party("@bob:example.org", "BOB1", dir);
  return { alice, bob, wire: new Wire([alice, bob], tamper), dir };
}

/** Alice requests, Bob accepts, Alice starts: returns the flow ID with both at `keys_exchanged` (unless tampered). */
function runToSas(alice: Party, bob: Party, wire: Wire): string {
  const req = alice.machine.requestToDevice(bob.userId, [bob.deviceId]);
  const flowId = req.updates[0]!.flowId;
  wire.pump(alice, req);
  assert.equal(bob.last(flowId).phase, "requested");
  wire.pump(bob, bob.machine.accept(flowId));
  assert.equal(alice.last(flowId).phase, "ready");
  wire.pump(alice, alice.machine.startSas(flowId));
  return flowId;
}

describe("engine: SAS verification between two devices (m.sas.v1)", () => {
  it("runs request → ready → start → accept → key → mac → done; both sides show the same emoji and numbers and verify each other's device and master key", async () => {
    const { alice, bob, wire, dir } = await pair();
    dir.masters.set(alice.userId, "AliceMasterKeyAliceMasterKeyAliceMasterKey0");
    dir.masters.set(bob.userId, "BobMasterKeyBobMasterKeyBobMasterKeyBobMas0");
    const flowId = runToSas(alice, bob, wire);
    const a = alice.last(flowId);
    const b = bob.last(flowId);
    assert.equal(a.phase, "keys_exchanged");
    assert.equal(b.phase, "keys_exchanged");
    assert.equal(a.sas!.emoji!.length, 7);
    assert.deepEqual(a.sas, b.sas);
    for (const n of a.sas!.decimal!) assert.ok(n >= 1000 && n <= 9191);
    assert.deepEqual(
      wire.log.map((m) => m.type),
      ["m.key.verification.request", "m.key.verification.ready", "m.key.verification.start", "m.key.verification.accept", "m.key.verification.key", "m.key.verification.key"],
    );
    wire.pump(alice, alice.machine.confirm(flowId));
    assert.equal(bob.last(flowId).phase, "keys_exchanged", "Bob's MAC check waits for Bob's confirmation");
    wire.pump(bob, bob.machine.confirm(flowId));
    assert.equal(alice.last(flowId).phase, "done");
    assert.equal(bob.last(flowId).phase, "done");
    assert.deepEqual(alice.last(flowId).verified, { userId: bob.userId, deviceId: bob.deviceId, masterKey: "BobMasterKeyBobMasterKeyBobMasterKeyBobMas0" });
    assert.deepEqual(bob.last(flowId).verified, { userId: alice.userId, deviceId: alice.deviceId, masterKey: "AliceMasterKeyAliceMasterKeyAliceMasterKey0" });
    assert.ok(wire.log.filter((m) => m.type === "m.key.verification.mac").every((m) => Object.keys(m.content.mac as Json).length === 2));
  });

  it("a key replaced on the wire (man in the middle) cancels with m.mismatched_commitment on the starting side", async () => {
    await initOlm();
    const mitm = new Olm.SAS();
    const { alice, bob, wire } = await pair((m, from) => (m.type === "m.key.verification.key" && from.userId === "@bob:example.org" ? { ...m, content: { ...m.content, key: mitm.get_pubkey() } } : m));
    const flowId = runToSas(alice, bob, wire);
    assert.equal(alice.last(flowId).phase, "cancelled");
    assert.deepEqual(alice.last(flowId).cancel, { code: "m.mismatched_commitment", reason: "The commitment did not match the key", byUs: true });
    assert.equal(bob.last(flowId).cancel?.code, "m.mismatched_commitment", "Bob learns the code from Alice's cancel");
    mitm.free();
  });

  it("a tampered MAC cancels with m.key_mismatch and verifies nothing", async () => {
    const { alice, bob, wire } = await pair((m, from) => {
      if (m.type !== "m.key.verification.mac" || from.userId !== "@bob:example.org") return m;
      const mac = { ...(m.content.mac as Record<string, string>) };
      const k = Object.keys(mac)[0]!;
      mac[k] = mac[k]!.replace(/^./, (c) => (c === "A" ? "B" : "A"));
      return { ...m, content: { ...m.content, mac } };
    });
    const flowId = runToSas(alice, bob, wire);
    wire.pump(alice, alice.machine.confirm(flowId));
    wire.pump(bob, bob.machine.confirm(flowId));
    assert.equal(alice.last(flowId).cancel?.code, "m.key_mismatch");
    assert.equal(alice.last(flowId).verified, null);
    assert.equal(bob.last(flowId).phase, "cancelled");
  });

  it("a MAC over a key list that was cut down cancels with m.key_mismatch", async () => {
    const { alice, bob, wire, dir } = await pair((m, from) => {
      if (m.type !== "m.key.verification.mac" || from.userId !== "@bob:example.org") return m;
      const mac = { ...(m.content.mac as Record<string, string>) };
      delete mac["ed25519:BobMasterKeyBobMasterKeyBobMasterKeyBobMas0"];
      return { ...m, content: { ...m.content, mac } };
    });
    dir.masters.set("@bob:example.org", "BobMasterKeyBobMasterKeyBobMasterKeyBobMas0");
    const flowId = runToSas(alice, bob, wire);
    wire.pump(alice, alice.machine.confirm(flowId));
    wire.pump(bob, bob.machine.confirm(flowId));
    assert.equal(alice.last(flowId).cancel?.code, "m.key_mismatch");
  });

  it("the user saying the strings differ cancels both sides with m.mismatched_sas", async () => {
    const { alice, bob, wire } = await pair();
    const flowId = runToSas(alice, bob, wire);
    wire.pump(bob, bob.machine.mismatch(flowId));
    assert.equal(alice.last(flowId).cancel?.code, "m.mismatched_sas");
    assert.equal(alice.last(flowId).cancel?.byUs, false);
    assert.equal(bob.last(flowId).cancel?.byUs, true);
  });

  it("a flow not done within 10 minutes is cancelled with m.timeout, and the other side is told", async () => {
    const { alice, bob, wire } = await pair();
    const flowId = runToSas(alice, bob, wire);
    alice.clock.now += FLOW_TIMEOUT_MS - 1000;
    assert.deepEqual(alice.machine.tick().messages, []);
    alice.clock.now += 2000;
    wire.pump(alice, alice.machine.tick());
    assert.equal(alice.last(flowId).cancel?.code, "m.timeout");
    assert.equal(bob.last(flowId).cancel?.code, "m.timeout");
  });

  it("requests older than 10 minutes or more than 5 minutes in the future are ignored", async () => {
    const { alice, bob } = await pair();
    const content = (ts: number, id: string): Json => ({ from_device: alice.deviceId, methods: ["m.sas.v1"], timestamp: ts, transaction_id: id });
    bob.machine.handle(alice.userId, "m.key.verification.request", content(bob.clock.now - 11 * 60_000, "old"), { transport: "to_device" });
    bob.machine.handle(alice.userId, "m.key.verification.request", content(bob.clock.now + 6 * 60_000, "future"), { transport: "to_device" });
    bob.machine.handle(alice.userId, "m.key.verification.request", content(bob.clock.now - 9 * 60_000, "fresh"), { transport: "to_device" });
    assert.equal(bob.machine.get("old"), null);
    assert.equal(bob.machine.get("future"), null);
    assert.equal(bob.machine.get("fresh")?.phase, "requested");
  });

  it("a start with an unknown method, or without a MAC method in common, is cancelled with m.unknown_method", async () => {
    const { alice, bob, wire } = await pair();
    for (const start of [{ method: "m.qr_code.scan.v1" }, { method: "m.sas.v1", key_agreement_protocols: ["curve25519-hkdf-sha256"], hashes: ["sha256"], message_authentication_codes: ["hmac-sha256"], short_authentication_string: ["emoji"] }]) {
      const req = alice.machine.requestToDevice(bob.userId, [bob.deviceId]);
      const flowId = req.updates[0]!.flowId;
      wire.pump(alice, req);
      wire.pump(bob, bob.machine.accept(flowId));
      const out = bob.machine.handle(alice.userId, "m.key.verification.start", { ...start, from_device: alice.deviceId, transaction_id: flowId }, { transport: "to_device" });
      assert.equal(bob.last(flowId).cancel?.code, "m.unknown_method");
      assert.deepEqual(out.messages.map((m) => [m.type, m.content.code]), [["m.key.verification.cancel", "m.unknown_method"]]);
    }
  });

  it("a message out of order (a key before the accept) cancels with m.unexpected_message", async () => {
    const { alice, bob, wire } = await pair();
    const req = alice.machine.requestToDevice(bob.userId, [bob.deviceId]);
    const flowId = req.updates[0]!.flowId;
    wire.pump(alice, req);
    wire.pump(bob, bob.machine.accept(flowId));
    alice.machine.startSas(flowId);
    const out = alice.machine.handle(bob.userId, "m.key.verification.key", { key: "abc", transaction_id: flowId }, { transport: "to_device" });
    assert.equal(alice.last(flowId).cancel?.code, "m.unexpected_message");
    assert.equal(out.messages[0]?.content.code, "m.unexpected_message");
  });

  it("both sides sending start: the smaller user ID's start wins and the flow completes", async () => {
    const { alice, bob, wire } = await pair();
    const req = alice.machine.requestToDevice(bob.userId, [bob.deviceId]);
    const flowId = req.updates[0]!.flowId;
    wire.pump(alice, req);
    wire.pump(bob, bob.machine.accept(flowId));
    // Both start before seeing the other's start.
    const aStart = alice.machine.startSas(flowId);
    const bStart = bob.machine.startSas(flowId);
    wire.pump(bob, bStart);
    wire.pump(alice, aStart);
    assert.equal(alice.last(flowId).phase, "keys_exchanged");
    assert.equal(bob.last(flowId).phase, "keys_exchanged");
    assert.deepEqual(alice.last(flowId).sas, bob.last(flowId).sas);
    // Alice's start won: Bob accepted it.
    assert.equal(wire.log.filter((m) => m.type === "m.key.verification.accept").map((m) => m.from).join(), bob.userId);
  });

  it("in-room flows relate every message to the request event and complete", async () => {
    const { alice, bob, wire } = await pair();
    const roomId = "!dm:example.org";
    const reqContent = alice.machine.roomRequestContent(bob.userId);
    const flowId = "$request";
    wire.pump(alice, alice.machine.roomRequestSent(roomId, flowId, bob.userId));
    bob.machine.handle(alice.userId, "m.room.message", reqContent, { transport: "room", roomId, eventId: flowId, originServerTs: bob.clock.now });
    wire.pump(bob, bob.machine.accept(flowId));
    wire.pump(alice, alice.machine.startSas(flowId));
    wire.pump(alice, alice.machine.confirm(flowId));
    wire.pump(bob, bob.machine.confirm(flowId));
    assert.equal(alice.last(flowId).phase, "done");
    assert.equal(bob.last(flowId).phase, "done");
    assert.ok(wire.log.every((m) => (m.content["m.relates_to"] as Json | undefined)?.event_id === flowId && !("transaction_id" in m.content)));
  });
});
