import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { canSend, creatorsOf, powerLevelsFrom, userPowerLevel } from "../../../../src/client/rooms/RoomStateView.js";

describe("power levels", () => {
  it("the spec's defaults fill in what the event leaves out; no event at all means 0 for everything", () => {
    const pl = powerLevelsFrom({ users: { "@a:hs": 100 } });
    assert.equal(pl.state_default, 50);
    assert.equal(pl.events_default, 0);
    assert.equal(pl.redact, 50);
    assert.equal(powerLevelsFrom(null).state_default, 0);
  });

  it("userCanSend compares the user's level with the event type's, state events with state_default", () => {
    const pl = powerLevelsFrom({ users: { "@admin:hs": 100, "@mod:hs": "50" }, users_default: 0, events: { "m.room.name": 50, "m.reaction": 10 }, events_default: 0, state_default: 50 });
    assert.equal(userPowerLevel(pl, "@mod:hs"), 50);
    assert.equal(canSend(pl, "@nobody:hs", "m.room.message", false), true);
    assert.equal(canSend(pl, "@nobody:hs", "m.reaction", false), false);
    assert.equal(canSend(pl, "@nobody:hs", "m.room.topic", true), false);
    assert.equal(canSend(pl, "@mod:hs", "m.room.name", true), true);
    assert.equal(canSend(pl, "@admin:hs", "m.room.power_levels", true), true);
  });

  it("hostile keys and non-integer levels are ignored", () => {
    const pl = powerLevelsFrom(JSON.parse('{"users":{"__proto__":100,"@x:hs":1.5},"events_default":"abc"}') as Record<string, unknown>);
    assert.equal(userPowerLevel(pl, "@x:hs"), 0);
    assert.equal(userPowerLevel(pl, "__proto__"), 100);
    assert.equal(pl.events_default, 0);
    assert.equal(userPowerLevel(pl, "toString"), 0);
  });

  it("in room versions 12 and later the creators are above every level; before, they are not special", () => {
    const create = (version: string) => ({ type: "m.room.create", sender: "@c:hs", content: { room_version: version, additional_creators: ["@d:hs", 5] } });
    assert.deepEqual(creatorsOf(create("12")), ["@c:hs", "@d:hs"]);
    assert.deepEqual(creatorsOf(create("11")), []);
    assert.deepEqual(creatorsOf(null), []);
    const pl = powerLevelsFrom({ users: { "@c:hs": 0 }, events: { "m.room.tombstone": 150 } }, creatorsOf(create("12")));
    assert.equal(canSend(pl, "@c:hs", "m.room.tombstone", true), true);
    assert.equal(canSend(pl, "@x:hs", "m.room.tombstone", true), false);
  });
});
