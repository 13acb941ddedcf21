/**
 * Message contents with relations (spec "Rich replies", "Event replacements", "Event
 * annotations", "Threading"): replies with their fallback and `m.mentions`, edits, reactions and
 * thread messages. Pure functions; `Room` sends what they build (in encrypted rooms the relation
 * stays in the clear, see `send/RoomSendQueue`).
 */
import { isObj, type Json } from "../json.js";

/** The event a reply or thread message refers to: what {@link replyContent} reads of it. */
export interface ReplyTarget {
  roomId: string;
  eventId: string;
  sender: string;
  content: Record<string, unknown>;
}

/** Escape text for HTML (`&`, `<`, `>`, `"`, `'`). */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
}

/** A body without the reply fallback it may start with (`> ` lines up to the first blank line). */
export function stripReplyFallback(body: string): string {
  const lines = body.split("\n");
  if (!lines[0]?.startsWith("> ")) return body;
  let i = 0;
  while (i < lines.length && lines[i]!.startsWith(">")) i++;
  if (lines[i] === "") i++;
  return lines.slice(i).join("\n");
}

/** A formatted body without the `<mx-reply>` block it may start with. */
function stripHtmlReplyFallback(html: string): string {
  return html.replace(/^<mx-reply>[\s\S]*?<\/mx-reply>/, "");
}

/** The thread `ev` is in (its root's event ID), or null. */
export function threadRootOf(ev: Pick<ReplyTarget, "content">): string | null {
  const rel = ev.content["m.relates_to"];
  return isObj(rel) && rel.rel_type === "m.thread" && typeof rel.event_id === "string" ? rel.event_id : null;
}

/**
 * A rich reply to `to`: `content` (a message content with `body`, and `formatted_body` when it is
 * HTML) with the reply fallback (quoted body, `<mx-reply>` block), `m.relates_to.m.in_reply_to`,
 * and `m.mentions` naming the replied-to sender (plus the mentions `content` already has). A reply
 * to an event in a thread stays in that thread (`is_falling_back: false`).
 */
export function replyContent(to: ReplyTarget, content: Record<string, unknown>): Json {
  const body = typeof content.body === "string" ? content.body : "";
  const origBody = stripReplyFallback(typeof to.content.body === "string" ? to.content.body : "");
  const origHtml =
    to.content.format === "org.matrix.custom.html" && typeof to.content.formatted_body === "string"
      ? stripHtmlReplyFallback(to.content.formatted_body)
      : escapeHtml(origBody).replace(/\n/g, "<br>");
  const html = content.format === "org.matrix.custom.html" && typeof content.formatted_body === "string" ? content.formatted_body : escapeHtml(body).replace(/\n/g, "<br>");
  const quoted = origBody.split("\n").map((l, i) => (i === 0 ? `> <${to.sender}> ${l}` : `> ${l}`));
  const link = (path: string): string => `https://matrix.to/#/${path.split("/").map(encodeURIComponent).join("/")}`;
  const mentions = isObj(content["m.mentions"]) ? content["m.mentions"] : {};
  const userIds = new Set([...(Array.isArray(mentions.user_ids) ? mentions.user_ids.filter((u): u is string => typeof u === "string") : []), to.sender]);
  const root = threadRootOf(to);
  const relatesTo: Json = { "m.in_reply_to": { event_id: to.eventId } };
  if (root) Object.assign(relatesTo, { rel_type: "m.thread", event_id: root, is_falling_back: false });
  return {
    ...content,
    body: `${quoted.join("\n")}\n\n${body}`,
    format: "org.matrix.custom.html",
    formatted_body:
      `<mx-reply><blockquote><a href="${escapeHtml(link(`${to.roomId}/${to.eventId}`))}">In reply to</a> ` +
      `<a href="${escapeHtml(link(to.sender))}">${escapeHtml(to.sender)}</a><br>${origHtml}</blockquote></mx-reply>${html}`,
    "m.mentions": { ...mentions, user_ids: [...userIds] },
    "m.relates_to": relatesTo,
  };
}

/**
 * An edit of `eventId` (`m.replace`): `newContent` is the complete new message content; the event's
 * own body is the new body prefixed with `* ` for clients that do not show edits.
 */
export function editContent(eventId: string, newContent: Record<string, unknown>): Json {
  const { "m.relates_to": _dropped, ...replacement } = newContent;
  const out: Json = { ...replacement, "m.new_content": replacement, "m.relates_to": { rel_type: "m.replace", event_id: eventId } };
  if (typeof replacement.body === "string") out.body = `* ${replacement.body}`;
  if (typeof replacement.formatted_body === "string") out.formatted_body = `* ${replacement.formatted_body}`;
  return out;
}

/** A reaction (`m.annotation`) to `eventId` with `key` (usually an emoji). */
export function reactionContent(eventId: string, key: string): Json {
  return { "m.relates_to": { rel_type: "m.annotation", event_id: eventId, key } };
}

/**
 * A message in the thread of `rootEventId`. `inReplyTo` is the latest event of the thread the
 * client saw (the fallback reply for clients without threads; default the root).
 */
export function threadContent(rootEventId: string, content: Record<string, unknown>, inReplyTo: string = rootEventId): Json {
  return { ...content, "m.relates_to": { rel_type: "m.thread", event_id: rootEventId, is_falling_back: true, "m.in_reply_to": { event_id: inReplyTo } } };
}
