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
