// What the page looks at: a view, a topic and a partition; how the URL's
// hash keeps them across a reload; and how topics' settings read.

import { formatBytes } from "./format.js";

/** defaultTopic is what a request that names no topic uses. */
export const defaultTopic = "default";

export type View = "tail" | "browse";

/** Selection is the partition the tail, Browse and the overview follow. */
export interface Selection {
  readonly topic: string;
  readonly partition: number;
}

/** Place is a Selection and the records view showing it. */
export interface Place extends Selection {
  readonly view: View;
}

const topicName = /^[a-zA-Z0-9._-]{1,249}$/;
const maxPartition = 2 ** 32 - 1;

/** validTopic reports whether name is a topic name the server accepts. */
export function validTopic(name: string): boolean {
  return topicName.test(name);
}

/**
 * parseHash reads a place from a URL hash: "#browse&topic=orders&partition=2".
 * Missing or malformed parts are the defaults (the live tail, partition 0 of
 * "default"); the hashes of older versions ("#tail", "#browse") still work.
 */
export function parseHash(hash: string): Place {
  const q = new URLSearchParams(hash.replace(/^#/, ""));
  const view: View = q.has("browse") || q.get("view") === "browse" ? "browse" : "tail";
  const t = q.get("topic") ?? "";
  const topic = validTopic(t) ? t : defaultTopic;
  const p = q.get("partition") ?? "";
  const n = /^[0-9]{1,10}$/.test(p) ? Number(p) : 0;
  return { view, topic, partition: n <= maxPartition ? n : 0 };
}

/** formatHash writes a place as parseHash reads it, leaving out the defaults. */
export function formatHash(p: Place): string {
  let h = `#${p.view}`;
  if (p.topic !== defaultTopic || p.partition !== 0) h += `&topic=${p.topic}`;
  if (p.partition !== 0) h += `&partition=${p.partition}`;
  return h;
}

/**
 * topicChoices is what the topic selector offers: the listed topics in
 * name order, "default" first, and the current one even when the list
 * lacks it (not yet listed, or the caller may not list it).
 */
export function topicChoices(listed: readonly string[], current: string): string[] {
  const names = new Set(listed);
  names.add(current);
  names.add(defaultTopic);
  return [...names].sort((a, b) => (a === defaultTopic ? -1 : b === defaultTopic ? 1 : a < b ? -1 : a > b ? 1 : 0));
}

/** Duration is a google.protobuf.Duration's fields. */
export interface Duration {
  seconds: bigint;
  nanos: number;
}

const spans: [number, string][] = [
  [86400, "d"],
  [3600, "h"],
  [60, "min"],
  [1, "s"],
];

/**
 * formatDuration renders a duration with its two largest units: 7 d,
 * 1 d 12 h, 90 s -> 1 min 30 s; under a second, in milliseconds.
 */
export function formatDuration(d: Duration): string {
  let s = Number(d.seconds);
  if (s <= 0) return d.nanos > 0 ? `${Math.max(1, Math.round(d.nanos / 1e6))} ms` : "0 s";
  const parts: string[] = [];
  for (const [n, unit] of spans) {
    if (s >= n) {
      parts.push(`${Math.floor(s / n)} ${unit}`);
      s %= n;
    } else if (parts.length > 0) {
      break; // no zero in the middle: 1 d 0 h 5 min reads as 1 d
    }
    if (parts.length === 2) break;
  }
  return parts.join(" ");
}

/** TopicSettings are the fields of a TopicConfig the page shows. */
export interface TopicSettings {
  retentionBytes: bigint;
  retentionAge?: Duration;
}

/**
 * formatRetention says how long a topic keeps records: "7 d", "1.0 GiB",
 * "7 d or 1.0 GiB" (whichever comes first), or "forever". The topic
 * "default" is the system group's, whose retention is each node's own
 * (serve's --retention-*): without settings of its own it says so.
 */
export function formatRetention(name: string, c: TopicSettings | undefined): string {
  const age = c?.retentionAge && (c.retentionAge.seconds > 0n || c.retentionAge.nanos > 0) ? formatDuration(c.retentionAge) : "";
  const size = c && c.retentionBytes > 0n ? formatBytes(c.retentionBytes) : "";
  if (age && size) return `${age} or ${size}`;
  return age || size || (name === defaultTopic ? "node's setting" : "forever");
}

/**
 * formatReplication is a topic's replication factor; 0 (the topic
 * "default") means every voter of the system group.
 */
export function formatReplication(factor: number): string {
  return factor > 0 ? String(factor) : "all";
}
