// Package-free value and number formatting for the dashboard. Nothing here
// touches the DOM, so node's test runner can check it.

/** How a record's value is best shown. */
export type ValueKind = "empty" | "json" | "text" | "hex";

export interface FormattedValue {
  kind: ValueKind;
  /** text is the value rendered for display (possibly truncated). */
  text: string;
  /** truncated is true when only the first bytes of the value were used. */
  truncated: boolean;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * utf8Boundary returns the largest n <= limit such that bytes[0:n] does not
 * end in the middle of a UTF-8 sequence, so a truncated prefix still decodes.
 */
export function utf8Boundary(bytes: Uint8Array, limit: number): number {
  if (limit >= bytes.length) return bytes.length;
  if (limit <= 0) return 0;
  // Walk back over at most 3 continuation bytes to the lead byte.
  let i = limit;
  let back = 0;
  while (i > 0 && back < 4 && (bytes[i] & 0xc0) === 0x80) {
    i--;
    back++;
  }
  return i;
}

/** decodeText returns the value as text, or undefined when it is not printable UTF-8. */
export function decodeText(bytes: Uint8Array): string | undefined {
  let s: string;
  try {
    s = utf8.decode(bytes);
  } catch {
    return undefined;
  }
  // Control characters other than tab, newline and carriage return mean
  // binary data that happens to be valid UTF-8 (e.g. small integers).
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if ((c < 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) || c === 0x7f) {
      return undefined;
    }
  }
  return s;
}

/** hexDump renders bytes 16 to a line with their offset and printable ASCII. */
export function hexDump(bytes: Uint8Array): string {
  const lines: string[] = [];
  for (let off = 0; off < bytes.length; off += 16) {
    const row = bytes.subarray(off, Math.min(off + 16, bytes.length));
    let hex = "";
    let ascii = "";
    for (let i = 0; i < 16; i++) {
      if (i === 8) hex += " ";
      if (i < row.length) {
        hex += row[i].toString(16).padStart(2, "0") + " ";
        ascii += row[i] >= 0x20 && row[i] < 0x7f ? String.fromCharCode(row[i]) : ".";
      } else {
        hex += "   ";
      }
    }
    lines.push(off.toString(16).padStart(8, "0") + "  " + hex + " |" + ascii + "|");
  }
  return lines.join("\n");
}

/** hexPreview renders bytes as space-separated hex pairs. */
export function hexPreview(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i++) {
    if (i > 0) s += " ";
    s += bytes[i].toString(16).padStart(2, "0");
  }
  return s;
}

function looksLikeJSON(s: string): boolean {
  const t = s.trimStart();
  return t.startsWith("{") || t.startsWith("[");
}

/**
 * formatValue renders a whole value for the detail view: pretty JSON for
 * JSON objects and arrays, text for printable UTF-8, otherwise a hex dump.
 * At most maxBytes of the value are used.
 */
export function formatValue(bytes: Uint8Array, maxBytes = 1 << 20): FormattedValue {
  if (bytes.length === 0) return { kind: "empty", text: "(empty)", truncated: false };
  const truncated = bytes.length > maxBytes;
  const head = truncated ? bytes.subarray(0, utf8Boundary(bytes, maxBytes)) : bytes;
  const text = decodeText(head);
  if (text === undefined) {
    const raw = truncated ? bytes.subarray(0, maxBytes) : bytes;
    return { kind: "hex", text: hexDump(raw), truncated };
  }
  if (!truncated && looksLikeJSON(text)) {
    try {
      return { kind: "json", text: JSON.stringify(JSON.parse(text), null, 2), truncated };
    } catch {
      // Not JSON after all: show it as text.
    }
  }
  return { kind: "text", text, truncated };
}

/**
 * previewValue renders a value on one line of at most maxChars characters
 * for the tail and browse lists: compact JSON, text with line breaks shown
 * as ⏎, or hex pairs.
 */
export function previewValue(bytes: Uint8Array, maxChars = 200): FormattedValue {
  if (bytes.length === 0) return { kind: "empty", text: "(empty)", truncated: false };
  // A UTF-8 character is at most 4 bytes; hex needs 3 characters a byte.
  const budget = maxChars * 4;
  const cut = bytes.length > budget;
  const head = cut ? bytes.subarray(0, utf8Boundary(bytes, budget)) : bytes;
  const text = decodeText(head);
  let kind: ValueKind;
  let out: string;
  if (text === undefined) {
    kind = "hex";
    out = hexPreview(bytes.subarray(0, Math.min(bytes.length, Math.ceil(maxChars / 3) + 1)));
  } else {
    kind = "text";
    out = text;
    if (!cut && looksLikeJSON(text)) {
      try {
        out = JSON.stringify(JSON.parse(text));
        kind = "json";
      } catch {
        // Plain text.
      }
    }
    out = out.replace(/\r?\n/g, "⏎").replace(/\t/g, " ");
  }
  let truncated = cut;
  if (out.length > maxChars) {
    out = out.slice(0, maxChars - 1) + "…";
    truncated = true;
  } else if (cut) {
    out += "…";
  }
  return { kind, text: out, truncated };
}

const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

/** formatBytes renders a byte count with a binary unit: 1536 -> "1.5 KiB". */
export function formatBytes(n: number | bigint): string {
  let v = Number(n);
  if (!Number.isFinite(v) || v < 0) return "?";
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  if (u === 0) return `${v} B`;
  return `${v < 10 ? v.toFixed(1) : Math.round(v).toString()} ${units[u]}`;
}

/** formatCount groups digits with commas, independent of the browser's locale. */
export function formatCount(n: number | bigint): string {
  const neg = typeof n === "bigint" ? n < 0n : n < 0;
  let s = (typeof n === "bigint" ? (neg ? -n : n) : Math.round(Math.abs(n))).toString();
  let out = "";
  while (s.length > 3) {
    out = "," + s.slice(-3) + out;
    s = s.slice(0, -3);
  }
  return (neg ? "-" : "") + s + out;
}

/** formatRate renders records per second: 0.5 -> "0.5/s", 12345 -> "12.3k/s". */
export function formatRate(perSecond: number): string {
  if (!Number.isFinite(perSecond) || perSecond < 0) return "–";
  if (perSecond < 10) return `${Math.round(perSecond * 10) / 10}/s`;
  if (perSecond < 1000) return `${Math.round(perSecond)}/s`;
  if (perSecond < 1e6) return `${(perSecond / 1000).toFixed(perSecond < 1e4 ? 2 : 1)}k/s`;
  return `${(perSecond / 1e6).toFixed(2)}M/s`;
}

const maxUint64 = (1n << 64n) - 1n;

/** parseOffset reads a user-entered offset; it returns an error sentence for bad input. */
export function parseOffset(input: string): bigint | Error {
  const s = input.trim().replace(/[,_\s]/g, "");
  if (s === "") return new Error("Enter an offset (a whole number, 0 or more).");
  if (!/^[0-9]+$/.test(s)) return new Error(`"${input.trim()}" is not an offset: use a whole number, 0 or more.`);
  const v = BigInt(s);
  if (v > maxUint64) return new Error(`${input.trim()} is larger than the largest offset (2^64-1).`);
  return v;
}

/** encodeProduce turns the produce form's input into record bytes, checking JSON when asked. */
export function encodeProduce(input: string, mode: "text" | "json"): Uint8Array | Error {
  if (mode === "json") {
    try {
      JSON.parse(input);
    } catch (e) {
      return new Error(`That is not valid JSON: ${(e as Error).message}`);
    }
  }
  return new TextEncoder().encode(input);
}

// ---- keys and headers -------------------------------------------------------

/** FormattedField is a record's key or a header value, shown on a line or two. */
export interface FormattedField {
  kind: "empty" | "text" | "hex";
  text: string;
  /** truncated is true when only the first maxBytes were used. */
  truncated: boolean;
}

/**
 * formatField renders a key or header value: as text when its bytes are
 * printable UTF-8 (see decodeText), otherwise as hex pairs. At most
 * maxBytes are used.
 */
export function formatField(bytes: Uint8Array, maxBytes = 1024): FormattedField {
  if (bytes.length === 0) return { kind: "empty", text: "(empty)", truncated: false };
  const truncated = bytes.length > maxBytes;
  const text = decodeText(truncated ? bytes.subarray(0, utf8Boundary(bytes, maxBytes)) : bytes);
  const out =
    text !== undefined ? { kind: "text" as const, text } : { kind: "hex" as const, text: hexPreview(bytes.subarray(0, maxBytes)) };
  if (truncated) out.text += "…";
  return { ...out, truncated };
}

/** FormattedHeader is one header as the detail view lists it. */
export interface FormattedHeader extends FormattedField {
  key: string;
}

/** formatHeaders renders headers in their order, repeated keys kept. */
export function formatHeaders(headers: readonly { key: string; value: Uint8Array }[], maxBytes = 1024): FormattedHeader[] {
  return headers.map((h) => ({ key: h.key, ...formatField(h.value, maxBytes) }));
}

/**
 * parseHeaders reads the produce form's headers: one `key: value` a line,
 * in order, a key may repeat; blank lines are skipped. The value is what
 * follows the first colon, without the spaces around it; keys are at most
 * 256 bytes of UTF-8, as the server requires.
 */
export function parseHeaders(input: string): { key: string; value: Uint8Array }[] | Error {
  const enc = new TextEncoder();
  const out: { key: string; value: Uint8Array }[] = [];
  const lines = input.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line.trim() === "") continue;
    const colon = line.indexOf(":");
    const key = colon < 0 ? "" : line.slice(0, colon).trim();
    if (key === "") return new Error(`Header line ${i + 1}: write a header as "key: value".`);
    if (enc.encode(key).length > 256) return new Error(`Header line ${i + 1}: the key is longer than 256 bytes.`);
    out.push({ key, value: enc.encode(line.slice(colon + 1).trim()) });
  }
  return out;
}

// ---- times ---------------------------------------------------------------------

/** Time is a google.protobuf.Timestamp's fields. */
export interface Time {
  seconds: bigint;
  nanos: number;
}

// The range a JavaScript Date can hold: ±100,000,000 days around 1970.
const maxDateMs = 8.64e15;

/** timeMs returns t in milliseconds since 1970, or NaN when a Date cannot hold it. */
export function timeMs(t: Time): number {
  const ms = Number(t.seconds) * 1000 + Math.floor(t.nanos / 1e6);
  return Math.abs(ms) <= maxDateMs && t.nanos >= 0 && t.nanos < 1e9 ? ms : NaN;
}

/** timeFromMs returns a Timestamp's fields for milliseconds since 1970. */
export function timeFromMs(ms: number): Time {
  const s = Math.floor(ms / 1000);
  return { seconds: BigInt(s), nanos: Math.round((ms - s * 1000) * 1e6) };
}

const pad = (n: number, w = 2) => String(n).padStart(w, "0");

/**
 * formatRFC3339 renders t in UTC with as many fractional digits as it has
 * (0, 3, 6 or 9, like protobuf's JSON): 2025-06-01T12:03:22.120Z.
 */
export function formatRFC3339(t: Time): string {
  const ms = timeMs(t);
  if (Number.isNaN(ms)) return `invalid time (${t.seconds}s ${t.nanos}ns)`;
  const base = new Date(Number(t.seconds) * 1000).toISOString().replace(/\.\d+Z$/, "");
  let frac = "";
  if (t.nanos % 1e6 === 0 && t.nanos > 0) frac = "." + pad(t.nanos / 1e6, 3);
  else if (t.nanos % 1e3 === 0 && t.nanos > 0) frac = "." + pad(t.nanos / 1e3, 6);
  else if (t.nanos > 0) frac = "." + pad(t.nanos, 9);
  return `${base}${frac}Z`;
}

/**
 * formatTimeShort renders a time for a list's time column, in local time:
 * 14:03:22.120 on the day of now, 06-01 14:03:22 in its year, otherwise
 * 2024-06-01 14:03.
 */
export function formatTimeShort(ms: number, now = Date.now()): string {
  if (!Number.isFinite(ms)) return "?";
  const d = new Date(ms);
  const n = new Date(now);
  const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  if (d.getFullYear() !== n.getFullYear()) return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${hm}`;
  const hms = `${hm}:${pad(d.getSeconds())}`;
  if (d.getMonth() !== n.getMonth() || d.getDate() !== n.getDate()) return `${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${hms}`;
  return `${hms}.${pad(d.getMilliseconds(), 3)}`;
}

/**
 * formatTimeLocal renders a time in local time with its UTC offset:
 * 2025-06-01 14:03:22.120 UTC+02:00 (no milliseconds when they are 0).
 */
export function formatTimeLocal(ms: number): string {
  if (!Number.isFinite(ms)) return "?";
  const d = new Date(ms);
  const off = -d.getTimezoneOffset();
  const zone = `UTC${off < 0 ? "-" : "+"}${pad(Math.floor(Math.abs(off) / 60))}:${pad(Math.abs(off) % 60)}`;
  const frac = d.getMilliseconds() === 0 ? "" : `.${pad(d.getMilliseconds(), 3)}`;
  return `${toDateTimeLocal(ms).replace("T", " ")}${frac} ${zone}`;
}

/** toDateTimeLocal renders ms as an <input type="datetime-local"> value: 2025-06-01T14:03:22 (local time). */
export function toDateTimeLocal(ms: number): string {
  const d = new Date(ms);
  return `${pad(d.getFullYear(), 4)}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/**
 * parseDateTimeLocal reads an <input type="datetime-local"> value (local
 * time, seconds and milliseconds optional) into milliseconds since 1970;
 * it returns an error sentence for bad input.
 */
export function parseDateTimeLocal(input: string): number | Error {
  const s = input.trim();
  if (s === "") return new Error("Pick a date and time.");
  const m = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,3}))?)?$/.exec(s);
  if (!m) return new Error(`"${s}" is not a date and time: use 2025-06-01T14:03:22.`);
  const [y, mo, d, h, mi, sec] = m.slice(1, 7).map((x) => Number(x ?? 0));
  const ms = Number((m[7] ?? "0").padEnd(3, "0"));
  const date = new Date(y, mo - 1, d, h, mi, sec, ms);
  // Date rolls 02-30 over to March; a wall-clock time a DST change skips is
  // fine (it reads as the hour after), a day that does not exist is not.
  if (date.getFullYear() !== y || date.getMonth() !== mo - 1 || date.getDate() !== d || h > 23 || mi > 59 || sec > 59) {
    return new Error(`"${s}" is not a date and time.`);
  }
  return date.getTime();
}
