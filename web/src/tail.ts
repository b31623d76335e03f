// The live tail's connection: a ConsumeStream that survives network blips
// and server restarts by reconnecting from the last offset it saw.

import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { offsetRange } from "./errors.js";
import type { Time } from "./format.js";
import type { LogService, Record } from "./gen/log/v1/log_pb.js";
import { Backoff } from "./rate.js";

/** TailRecord is one record as the tail and browse keep it. */
export interface TailRecord {
  offset: bigint;
  /** value holds at most maxBytes first bytes (see toTailRecord). */
  value: Uint8Array;
  /** size is the value's full length. */
  size: number;
  /** key holds at most maxBytes first bytes of the record's key. */
  key: Uint8Array;
  /** headers are the first headers, in order, that fit in maxBytes together. */
  headers: { key: string; value: Uint8Array }[];
  /** time is when the record was appended; unset by servers that do not keep times. */
  time?: Time;
  /** whole is true when value, key and headers are all kept in full. */
  whole: boolean;
}

const none = new Uint8Array(0);

/**
 * toTailRecord keeps what the lists show of a record: at most maxBytes of
 * its value, of its key, and of its headers together. The bytes are
 * copied: a view would pin the whole response buffer in memory.
 */
export function toTailRecord(r: Record, maxBytes: number): TailRecord {
  const v = r.value;
  const k = r.key;
  let whole = v.length <= maxBytes && k.length <= maxBytes;
  const headers: TailRecord["headers"] = [];
  if (r.headers.length > 0) {
    let budget = maxBytes;
    for (const h of r.headers) {
      budget -= h.key.length + h.value.length;
      if (budget < 0) {
        whole = false;
        break;
      }
      headers.push({ key: h.key, value: h.value.slice() });
    }
  }
  return {
    offset: r.offset,
    value: v.slice(0, maxBytes),
    size: v.length,
    key: k.length === 0 ? none : k.slice(0, maxBytes),
    headers,
    time: r.time ? { seconds: r.time.seconds, nanos: r.time.nanos } : undefined,
    whole,
  };
}

/** TailSource is the partition a tail follows: topic "" is "default". */
export interface TailSource {
  topic: string;
  partition: number;
}

/** TailStart says where a tail begins. */
export type TailStart =
  | { fromEnd: true; /** how many existing records to show first */ backlog: number }
  | { fromEnd: false; offset: bigint };

export type TailStatus =
  | { state: "idle" }
  | { state: "connecting"; from: TailStart }
  | { state: "following"; next?: bigint }
  | { state: "paused"; next?: bigint }
  | { state: "retrying"; inMs: number; error: ConnectError }
  | { state: "stopped"; error: ConnectError }
  /** skipped: records [from, to) were deleted (retention) before the tail read them. */
  | { state: "skipped"; from: bigint; to: bigint };

export interface TailOptions {
  client: Client<typeof LogService>;
  /** onRecords receives each batch in offset order; the array is the callee's to keep. */
  onRecords: (records: TailRecord[]) => void;
  onStatus: (status: TailStatus) => void;
  /** maxBatch caps the records per stream message (default 500). */
  maxBatch?: number;
  /** maxValueBytes caps the bytes kept of each value, key and the headers (default 4096). */
  maxValueBytes?: number;
  backoff?: Backoff;
  /** sleep waits ms or until signal aborts (tests shorten it). */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  /** healthyMs: a stream that lived this long resets the backoff (default 10s). */
  healthyMs?: number;
  /**
   * sliceMs: after handling records for this long without a break, the
   * tail yields so the page can paint while it catches up (default 8ms).
   */
  sliceMs?: number;
  /**
   * lowest returns the log's lowest offset. With it, a tail that falls
   * behind retention (OutOfRange below the start of the log) skips to the
   * oldest record left instead of stopping. It is called only when the
   * error carries no OffsetRange detail (older servers), with the
   * partition the tail follows.
   */
  lowest?: (signal: AbortSignal, source: TailSource) => Promise<bigint>;
  /** yieldToUI gives the page a turn to paint (default: until after the next frame). */
  yieldToUI?: () => Promise<void>;
  now?: () => number;
}

/**
 * yieldToEventLoop waits for the next paint when the page is visible, so a
 * backlog is read in slices between frames; hidden pages (no frames) and
 * non-browser runtimes get a timer instead.
 */
function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => {
    if (typeof requestAnimationFrame === "function" && typeof document !== "undefined" && !document.hidden) {
      requestAnimationFrame(() => setTimeout(resolve, 0));
    } else {
      setTimeout(resolve, 0);
    }
  });
}

function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    }
  });
}

/** fatal reports errors that retrying cannot fix without the user. */
function fatal(err: ConnectError): boolean {
  return (
    err.code === Code.NotFound || // the topic or partition does not exist (any more)
    err.code === Code.Unauthenticated ||
    err.code === Code.PermissionDenied ||
    err.code === Code.OutOfRange ||
    err.code === Code.InvalidArgument ||
    err.code === Code.Unimplemented
  );
}

/**
 * Tail follows the log. One stream runs at a time; start, pause, resume
 * and stop may be called in any order. After a failure it reconnects with
 * backoff from the offset after the last record it delivered, so no record
 * is delivered twice or skipped.
 */
export class Tail {
  private readonly opts: Required<Omit<TailOptions, "backoff" | "lowest">> & Pick<TailOptions, "lowest"> & { backoff: Backoff };
  private ctl: AbortController | undefined;
  private done: Promise<void> = Promise.resolve();
  private from: TailStart | undefined;
  private src: TailSource = { topic: "", partition: 0 };
  /** nextOffset is the offset after the last delivered record, once one was. */
  private nextOffset: bigint | undefined;

  constructor(opts: TailOptions) {
    this.opts = {
      maxBatch: 500,
      maxValueBytes: 4096,
      backoff: new Backoff(),
      sleep: abortableSleep,
      healthyMs: 10_000,
      sliceMs: 8,
      yieldToUI: yieldToEventLoop,
      now: () => performance.now(),
      ...opts,
    };
  }

  /** next is the offset the tail will ask for when it (re)connects, if known. */
  get next(): bigint | undefined {
    return this.nextOffset;
  }

  /** source is the partition the tail follows (or last followed). */
  get source(): TailSource {
    return this.src;
  }

  /** running reports whether a stream is open or being retried. */
  get running(): boolean {
    return this.ctl !== undefined;
  }

  /**
   * start drops any current stream and follows a partition from `from`:
   * by default partition 0 of the topic "default".
   */
  start(from: TailStart, source: TailSource = { topic: "", partition: 0 }): void {
    this.abort();
    this.from = from;
    this.src = { ...source };
    this.nextOffset = from.fromEnd ? undefined : from.offset;
    this.opts.backoff.reset();
    this.spawn();
  }

  /** pause closes the stream and remembers where it was. */
  pause(): void {
    if (!this.abort()) return;
    this.opts.onStatus({ state: "paused", next: this.nextOffset });
  }

  /** resume reconnects from where the tail stopped; it does nothing while running or before start. */
  resume(): void {
    if (this.ctl || !this.from) return;
    this.opts.backoff.reset();
    this.spawn();
  }

  /** stop closes the stream; the returned promise settles when the loop has ended. */
  stop(): Promise<void> {
    this.abort();
    return this.done;
  }

  private abort(): boolean {
    const c = this.ctl;
    if (!c) return false;
    this.ctl = undefined;
    c.abort();
    return true;
  }

  private spawn(): void {
    const ctl = new AbortController();
    this.ctl = ctl;
    const prev = this.done;
    // Wait for the previous loop so two loops never deliver at once.
    this.done = prev.then(() => this.loop(ctl.signal));
  }

  private async loop(signal: AbortSignal): Promise<void> {
    const o = this.opts;
    const src = this.src;
    while (!signal.aborted) {
      const from: TailStart =
        this.nextOffset !== undefined ? { fromEnd: false, offset: this.nextOffset } : (this.from as TailStart);
      o.onStatus({ state: "connecting", from });
      const opened = o.now();
      let err: ConnectError;
      try {
        let following = false;
        const follow = () => {
          if (following || signal.aborted) return;
          following = true;
          o.onStatus({ state: "following", next: this.nextOffset });
        };
        const stream = o.client.consumeStream(
          {
            offset: from.fromEnd ? BigInt(from.backlog) : from.offset,
            fromEnd: from.fromEnd,
            maxBatch: o.maxBatch,
            topic: src.topic,
            partition: src.partition,
          },
          { signal, onHeader: follow },
        );
        let slice = o.now();
        for await (const res of stream) {
          if (signal.aborted) return;
          const recs = res.records.length > 0 ? res.records : res.record ? [res.record] : [];
          if (recs.length === 0) continue;
          const batch: TailRecord[] = new Array(recs.length);
          for (let i = 0; i < recs.length; i++) batch[i] = toTailRecord(recs[i], o.maxValueBytes);
          this.nextOffset = batch[batch.length - 1].offset + 1n;
          follow();
          o.onRecords(batch);
          if (o.now() - slice >= o.sliceMs) {
            // Catching up on a backlog would otherwise starve rendering.
            await o.yieldToUI();
            slice = o.now();
            if (signal.aborted) return;
          }
        }
        if (signal.aborted) return;
        err = new ConnectError("the server ended the stream", Code.Unavailable);
      } catch (e) {
        if (signal.aborted) return;
        err = ConnectError.from(e);
      }
      if (err.code === Code.OutOfRange && this.nextOffset !== undefined) {
        const from = this.nextOffset;
        let lowest = offsetRange(err)?.lowest;
        try {
          if (lowest === undefined && o.lowest) lowest = await o.lowest(signal, src);
        } catch {
          // Fall through: report the OutOfRange itself.
        }
        if (signal.aborted) return;
        if (lowest !== undefined && from < lowest) {
          this.nextOffset = lowest;
          o.onStatus({ state: "skipped", from, to: lowest });
          continue;
        }
      }
      if (fatal(err)) {
        if (this.ctl?.signal === signal) this.ctl = undefined;
        o.onStatus({ state: "stopped", error: err });
        return;
      }
      if (o.now() - opened >= o.healthyMs) o.backoff.reset();
      const inMs = o.backoff.next();
      o.onStatus({ state: "retrying", inMs, error: err });
      await o.sleep(inMs, signal);
    }
  }
}
