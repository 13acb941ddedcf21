import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { editContent, reactionContent, replyContent, stripReplyFallback, threadContent } from "../../../../src/client/rooms/RoomMessages.js";

const original = { roomId: "!r:hs", eventId: "$orig", sender: "@bob:hs", content: { msgtype: "m.text", body: "hi <there>\nsecond" } };

describe("RoomMessages", () => {
  it("a rich reply quotes the original in body and formatted_body, relates to it and mentions its sender", () => {
    const c = replyContent(original, { msgtype: "m.text", body: "pong" });
    assert.equal(c.body, "> <@bob:hs> hi <there>\n> second\n\npong");
    assert.equal(c.format, "org.matrix.custom.html");
    assert.equal(
      c.formatted_body,
      '<mx-reply><blockquote><a href="https://matrix.to/#/!r%3Ahs/%24orig">In reply to</a> <a href="https://matrix.to/#/%40bob%3Ahs">@bob:hs</a><br>hi &lt;there&gt;<br>second</blockquote></mx-reply>pong',
    );
    assert.deepEqual(c["m.relates_to"], { "m.in_reply_to": { event_id: "$orig" } });
    assert.deepEqual(c["m.mentions"], { user_ids: ["@bob:hs"] });
  });

  it("a reply to a reply quotes only the new text, not the older fallback", () => {
    const earlier = replyContent(original, { msgtype: "m.text", body: "pong" });
    const c = replyContent({ roomId: "!r:hs", eventId: "$reply", sender: "@alice:hs", content: earlier }, { msgtype: "m.text", body: "again" });
    assert.equal(c.body, "> <@alice:hs> pong\n\nagain");
    assert.ok(String(c.formatted_body).endsWith('<a href="https://matrix.to/#/%40alice%3Ahs">@alice:hs</a><br>pong</blockquote></mx-reply>again'));
    assert.equal(stripReplyFallback("no fallback"), "no fallback");
  });

  it("a reply to a thread message stays in its thread and keeps mentions the content had", () => {
    const inThread = { ...original, content: { ...original.content, "m.relates_to": { rel_type: "m.thread", event_id: "$root" } } };
    const c = replyContent(inThread, { msgtype: "m.text", body: "x", "m.mentions": { user_ids: ["@carol:hs"] } });
    assert.deepEqual(c["m.relates_to"], { "m.in_reply_to": { event_id: "$orig" }, rel_type: "m.thread", event_id: "$root", is_falling_back: false });
    assert.deepEqual(c["m.mentions"], { user_ids: ["@carol:hs", "@bob:hs"] });
  });

  it("an edit carries the new content in m.new_content (without a relation) and a starred fallback", () => {
    const c = editContent("$e", { msgtype: "m.text", body: "fixed", "m.relates_to": { x: 1 } });
    assert.deepEqual(c, { msgtype: "m.text", body: "* fixed", "m.new_content": { msgtype: "m.text", body: "fixed" }, "m.relates_to": { rel_type: "m.replace", event_id: "$e" } });
  });

  it("reactions annotate, thread messages relate to the root with a reply fallback", () => {
    assert.deepEqual(reactionContent("$e", "👍"), { "m.relates_to": { rel_type: "m.annotation", event_id: "$e", key: "👍" } });
    assert.deepEqual(threadContent("$root", { msgtype: "m.text", body: "t" }, "$last")["m.relates_to"], { rel_type: "m.thread", event_id: "$root", is_falling_back: true, "m.in_reply_to": { event_id: "$last" } });
  });
});
