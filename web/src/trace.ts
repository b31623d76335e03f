// W3C Trace Context for the dashboard's produce calls: each produce starts
// a trace of its own, sent as the traceparent header, which the node (and
// the leader it forwards to) continues; the page shows the trace id so a
// user can look the produce up in their tracing backend. No OpenTelemetry
// SDK: a traceparent is 55 characters of hex.

export interface TraceParent {
  /** The header value: 00-<trace id>-<span id>-01 (sampled). */
  header: string;
  /** 32 hex digits. */
  traceId: string;
  /** 16 hex digits: the caller's (this page's) span. */
  spanId: string;
}

type Random = (bytes: Uint8Array) => Uint8Array;

const cryptoRandom: Random = (b) => crypto.getRandomValues(b);

const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

// randomId returns n random bytes as hex, never all zeros (an invalid id).
function randomId(n: number, random: Random): string {
  for (;;) {
    const b = random(new Uint8Array(n));
    if (b.some((x) => x !== 0)) return hex(b);
  }
}

/** newTraceParent makes a sampled traceparent with random ids. */
export function newTraceParent(random: Random = cryptoRandom): TraceParent {
  const traceId = randomId(16, random);
  const spanId = randomId(8, random);
  return { header: `00-${traceId}-${spanId}-01`, traceId, spanId };
}

/** traceIdOf returns the trace id of a valid version-00 traceparent, or undefined. */
export function traceIdOf(header: string): string | undefined {
  const m = /^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$/.exec(header);
  if (!m || /^0+$/.test(m[1]) || /^0+$/.test(m[2])) return undefined;
  return m[1];
}
