import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, createRouterTransport, type HandlerContext } from "@connectrpc/connect";
import type { MessageInitShape } from "@bufbuild/protobuf";
import {
  LogService,
  OffsetRangeSchema,
  RecordSchema,
  ConsumeStreamResponseSchema,
  type ConsumeStreamRequest,
} from "../src/gen/log/v1/log_pb.js";
import { Backoff } from "../src/rate.js";
import { Tail, toTailRecord, type TailRecord, type TailSource, type TailStatus } from "../src/tail.js";

type RecordInit = MessageInitShape<typeof RecordSchema>;

/**
 * MemoryLog is a small in-memory log served through a real Connect router,
 * with scripted failures, so the tail's reconnect logic can be exercised
 * without a network.
 */
class MemoryLog {
  values: Uint8Array[] = [];
  /** extras[i] holds record i's key, headers and time, if it has any. */
  extras: (RecordInit | undefined)[] = [];
  /** lowest is the first offset still kept; lower ones were "deleted". */
  lowest = 0;
  /** rangeDetail attaches an OffsetRange detail to OutOfRange errors, as proglog does. */
  rangeDetail = false;
  requests: ConsumeStreamRequest[] = [];
  /** failures[i], if set, fails the i-th stream after that many records. */
  failures: { after: number; code?: Code; end?: boolean }[] = [];
  private waiters: (() => void)[] = [];

  append(...vs: string[]) {
    for (const v of vs) this.values.push(new TextEncoder().encode(v));
    for (const w of this.waiters.splice(0)) w();
  }

  appendRecord(r: RecordInit) {
    this.extras[this.values.length] = r;
    this.values.push(r.value ?? new Uint8Array());
    for (const w of this.waiters.splice(0)) w();
  }

  private outOfRange(msg: string): ConnectError {
    const details = this.rangeDetail
      ? [{ desc: OffsetRangeSchema, value: { lowest: BigInt(this.lowest), next: BigInt(this.values.length) } }]
      : undefined;
    return new ConnectError(msg, Code.OutOfRange, undefined, details);
  }

  private changed(signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      this.waiters.push(resolve);
      signal.addEventListener("abort", () => resolve(), { once: true });
    });
  }

  transport() {
    const log = this;
    return createRouterTransport(({ service }) => {
      service(LogService, {
        async *consumeStream(req: ConsumeStreamRequest, ctx: HandlerContext) {
          const call = log.requests.length;
          log.requests.push(req);
          let off = req.fromEnd ? Math.max(0, log.values.length - Number(req.offset)) : Number(req.offset);
          if (off > log.values.length) throw log.outOfRange(`offset ${off} past the end`);
          if (off < log.lowest) throw log.outOfRange(`offset ${off} was deleted`);
          const fail = log.failures[call];
          let sent = 0;
          const max = req.maxBatch || 1;
          for (;;) {
            if (fail && sent >= fail.after) {
              if (fail.end) return;
              throw new ConnectError("scripted failure", fail.code ?? Code.Unavailable);
            }
            if (off >= log.values.length) {
              await log.changed(ctx.signal);
              if (ctx.signal.aborted) return;
              continue;
            }
            let n = Math.min(max, log.values.length - off);
            if (fail) n = Math.min(n, fail.after - sent);
            const records = [];
            for (let i = 0; i < n; i++) {
              records.push(create(RecordSchema, { ...log.extras[off + i], offset: BigInt(off + i), value: log.values[off + i] }));
            }
            off += n;
            sent += n;
            yield create(ConsumeStreamResponseSchema, n === 1 && max === 1 ? { record: records[0] } : { records });
          }
        },
      });
    });
  }
}

interface Harness {
  log: MemoryLog;
  tail: Tail;
  got: TailRecord[];
  statuses: TailStatus[];
  /** until resolves once at least n records arrived. */
  until(n: number): Promise<void>;
  untilStatus(state: TailStatus["state"]): Promise<TailStatus>;
}

function harness(
  opts: {
    maxBatch?: number;
    maxValueBytes?: number;
    sliceMs?: number;
    yieldToUI?: () => Promise<void>;
    now?: () => number;
    lowest?: (signal: AbortSignal, source: TailSource) => Promise<bigint>;
  } = {},
): Harness {
  const log = new MemoryLog();
  const got: TailRecord[] = [];
  const statuses: TailStatus[] = [];
  let wake = () => {};
  const tail = new Tail({
    client: createClient(LogService, log.transport()),
    onRecords: (rs) => {
      got.push(...rs);
      wake();
    },
    onStatus: (s) => {
      statuses.push(s);
      wake();
    },
    backoff: new Backoff(1, 4, () => 1),
    sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
    ...opts,
  });
  const waitFor = async <T>(check: () => T | undefined): Promise<T> => {
    for (let i = 0; i < 2000; i++) {
      const v = check();
      if (v !== undefined) return v;
      await new Promise<void>((r) => {
        wake = r;
        setTimeout(r, 5);
      });
    }
    throw new Error(`timed out; got ${got.length} records, statuses ${statuses.map((s) => s.state).join(",")}`);
  };
  return {
    log,
    tail,
    got,
    statuses,
    until: (n) => waitFor(() => (got.length >= n ? true : undefined)).then(() => {}),
    untilStatus: (state) => waitFor(() => statuses.find((s) => s.state === state)),
  };
}

const offsets = (rs: TailRecord[]) => rs.map((r) => Number(r.offset));
const range = (a: number, b: number) => Array.from({ length: b - a }, (_, i) => a + i);

describe("Tail", () => {
  it("delivers history then live records in batches", async (t) => {
    const h = harness({ maxBatch: 4 });
    t.after(() => h.tail.stop());
    h.log.append(...range(0, 10).map(String));
    h.tail.start({ fromEnd: false, offset: 0n });
    await h.until(10);
    h.log.append("live");
    await h.until(11);
    assert.deepEqual(offsets(h.got), range(0, 11));
    assert.equal(new TextDecoder().decode(h.got[10].value), "live");
    assert.equal(h.log.requests[0].maxBatch, 4);
    assert.equal(h.tail.next, 11n);
    assert.ok(h.statuses.some((s) => s.state === "following"));
  });

  it("starts from the end with a backlog", async (t) => {
    const h = harness();
    t.after(() => h.tail.stop());
    h.log.append(...range(0, 20).map(String));
    h.tail.start({ fromEnd: true, backlog: 3 });
    await h.until(3);
    assert.deepEqual(offsets(h.got), [17, 18, 19]);
    assert.equal(h.log.requests[0].fromEnd, true);
    assert.equal(h.log.requests[0].offset, 3n);
  });

  const blips: { name: string; failure: { after: number; code?: Code; end?: boolean } }[] = [
    { name: "network error", failure: { after: 5, code: Code.Unavailable } },
    { name: "server ended the stream", failure: { after: 5, end: true } },
    { name: "internal error", failure: { after: 2, code: Code.Internal } },
  ];
  for (const b of blips) {
    it(`reconnects after ${b.name} without gaps or repeats`, async (t) => {
      const h = harness({ maxBatch: 3 });
      t.after(() => h.tail.stop());
      h.log.append(...range(0, 12).map(String));
      h.log.failures = [b.failure, b.failure];
      h.tail.start({ fromEnd: true, backlog: 12 });
      await h.until(12);
      assert.deepEqual(offsets(h.got), range(0, 12));
      assert.equal(h.log.requests[1].fromEnd, false);
      assert.equal(h.log.requests[1].offset, BigInt(b.failure.after));
      const retry = h.statuses.find((s) => s.state === "retrying");
      assert.ok(retry && retry.state === "retrying" && retry.error instanceof ConnectError);
    });
  }

  it("reconnects to the original start when nothing arrived yet", async (t) => {
    const h = harness();
    t.after(() => h.tail.stop());
    h.log.failures = [{ after: 0 }];
    h.tail.start({ fromEnd: true, backlog: 5 });
    await h.untilStatus("retrying");
    h.log.append("a");
    await h.until(1);
    assert.equal(h.log.requests[1].fromEnd, true);
    assert.equal(h.log.requests[1].offset, 5n);
  });

  it("follows the topic and partition it was started on, across reconnects", async (t) => {
    const sources: TailSource[] = [];
    let h: Harness | undefined = undefined;
    h = harness({
      lowest: async (_signal, source) => {
        sources.push(source);
        return BigInt(h!.log.lowest);
      },
    });
    t.after(() => h.tail.stop());
    h.log.append(...range(0, 4).map(String));
    h.log.failures = [{ after: 2 }];
    h.tail.start({ fromEnd: false, offset: 0n }, { topic: "orders", partition: 2 });
    await h.until(4);
    assert.deepEqual(
      h.log.requests.map((r) => [r.topic, r.partition, Number(r.offset)]),
      [
        ["orders", 2, 0],
        ["orders", 2, 2],
      ],
    );
    assert.deepEqual(h.tail.source, { topic: "orders", partition: 2 });
    // Retention on that partition: lowest is asked about the same one.
    h.tail.pause();
    h.log.append("x", "y");
    h.log.lowest = 5;
    h.tail.resume();
    await h.until(5);
    assert.deepEqual(sources, [{ topic: "orders", partition: 2 }]);
    // start without a source goes back to the default topic's partition 0.
    h.tail.start({ fromEnd: true, backlog: 1 });
    await h.until(6);
    assert.deepEqual([h.log.requests.at(-1)?.topic, h.log.requests.at(-1)?.partition], ["", 0]);
  });

  const fatal: Code[] = [Code.PermissionDenied, Code.Unauthenticated, Code.OutOfRange, Code.NotFound];
  for (const code of fatal) {
    it(`stops on ${Code[code]}`, async (t) => {
      const h = harness();
      t.after(() => h.tail.stop());
      h.log.append("a", "b");
      h.log.failures = [{ after: 1, code }];
      h.tail.start({ fromEnd: false, offset: 0n });
      const s = await h.untilStatus("stopped");
      assert.ok(s.state === "stopped" && s.error.code === code);
      assert.equal(h.tail.running, false);
      assert.equal(h.log.requests.length, 1);
      // resume retries from where it stopped.
      h.tail.resume();
      await h.until(2);
      assert.deepEqual(offsets(h.got), [0, 1]);
      assert.equal(h.log.requests[1].offset, 1n);
    });
  }

  it("skips records deleted by retention while it was away", async (t) => {
    let h: Harness | undefined = undefined;
    h = harness({ lowest: async () => BigInt(h!.log.lowest) });
    t.after(() => h.tail.stop());
    h.log.append(...range(0, 3).map(String));
    h.tail.start({ fromEnd: false, offset: 0n });
    await h.until(3);
    h.tail.pause();
    h.log.append(...range(3, 10).map(String));
    h.log.lowest = 6; // 3, 4 and 5 are gone before the tail comes back
    h.tail.resume();
    await h.until(7);
    assert.deepEqual(offsets(h.got), [0, 1, 2, 6, 7, 8, 9]);
    const skip = h.statuses.find((s) => s.state === "skipped");
    assert.ok(skip && skip.state === "skipped" && skip.from === 3n && skip.to === 6n);
  });

  it("skips ahead by the error's OffsetRange detail without asking for the bounds", async (t) => {
    const h = harness({
      lowest: async () => {
        throw new Error("lowest called although the error said");
      },
    });
    t.after(() => h.tail.stop());
    h.log.rangeDetail = true;
    h.log.append(...range(0, 3).map(String));
    h.tail.start({ fromEnd: false, offset: 0n });
    await h.until(3);
    h.tail.pause();
    h.log.append(...range(3, 10).map(String));
    h.log.lowest = 8;
    h.tail.resume();
    await h.until(5);
    assert.deepEqual(offsets(h.got), [0, 1, 2, 8, 9]);
    const skip = h.statuses.find((s) => s.state === "skipped");
    assert.ok(skip && skip.state === "skipped" && skip.from === 3n && skip.to === 8n);
  });

  it("skips ahead by the detail even without a lowest callback", async (t) => {
    const h = harness();
    t.after(() => h.tail.stop());
    h.log.rangeDetail = true;
    h.log.append(...range(0, 5).map(String));
    h.log.lowest = 2;
    h.tail.start({ fromEnd: false, offset: 1n });
    await h.until(3);
    assert.deepEqual(offsets(h.got), [2, 3, 4]);
  });

  it("stops on OutOfRange past the end even with lowest", async (t) => {
    let h: Harness | undefined = undefined;
    h = harness({ lowest: async () => BigInt(h!.log.lowest) });
    t.after(() => h.tail.stop());
    h.log.append("a");
    h.tail.start({ fromEnd: false, offset: 5n });
    const s = await h.untilStatus("stopped");
    assert.ok(s.state === "stopped" && s.error.code === Code.OutOfRange);
    assert.ok(!h.statuses.some((x) => x.state === "skipped"));
  });

  it("pauses and resumes from the next offset", async (t) => {
    const h = harness();
    t.after(() => h.tail.stop());
    h.log.append("a", "b");
    h.tail.start({ fromEnd: false, offset: 0n });
    await h.until(2);
    h.tail.pause();
    assert.equal(h.statuses.at(-1)?.state, "paused");
    assert.equal(h.tail.running, false);
    h.log.append("c", "d");
    h.tail.resume();
    await h.until(4);
    assert.deepEqual(offsets(h.got), [0, 1, 2, 3]);
    assert.equal(h.log.requests.at(-1)?.offset, 2n);
    assert.equal(h.log.requests.at(-1)?.fromEnd, false);
  });

  it("start replaces a running stream", async (t) => {
    const h = harness();
    t.after(() => h.tail.stop());
    h.log.append("a", "b", "c");
    h.tail.start({ fromEnd: false, offset: 0n });
    await h.until(3);
    h.got.length = 0;
    h.tail.start({ fromEnd: false, offset: 1n });
    await h.until(2);
    h.log.append("d");
    await h.until(3);
    assert.deepEqual(offsets(h.got), [1, 2, 3]);
  });

  it("keeps only the head of large values", async (t) => {
    const h = harness({ maxValueBytes: 4 });
    t.after(() => h.tail.stop());
    h.log.append("abcdefgh", "xy");
    h.tail.start({ fromEnd: false, offset: 0n });
    await h.until(2);
    assert.equal(new TextDecoder().decode(h.got[0].value), "abcd");
    assert.equal(h.got[0].size, 8);
    assert.equal(h.got[1].size, 2);
  });

  it("carries keys, headers and times", async (t) => {
    const h = harness({ maxValueBytes: 8 });
    t.after(() => h.tail.stop());
    const enc = (s: string) => new TextEncoder().encode(s);
    h.log.appendRecord({
      value: enc("v"),
      key: enc("user-1"),
      headers: [
        { key: "a", value: enc("1") },
        { key: "a", value: enc("2") },
      ],
      time: { seconds: 1748779402n, nanos: 5 },
    });
    h.log.appendRecord({ value: enc("w"), headers: [{ key: "big", value: enc("0123456789") }] });
    h.log.append("no metadata");
    h.tail.start({ fromEnd: false, offset: 0n });
    await h.until(3);
    const [a, b, c] = h.got;
    assert.deepEqual(a.key, enc("user-1"));
    assert.deepEqual(a.headers, [
      { key: "a", value: enc("1") },
      { key: "a", value: enc("2") },
    ]);
    assert.deepEqual(a.time, { seconds: 1748779402n, nanos: 5 });
    assert.equal(a.whole, true);
    assert.deepEqual(b.headers, [], "headers beyond maxValueBytes are left for the detail view to fetch");
    assert.equal(b.whole, false);
    assert.equal(c.key.length, 0);
    assert.equal(c.time, undefined);
    assert.equal(c.whole, false, "an 11-byte value is cut at 8");
  });

  it("yields to the page while catching up", async (t) => {
    let clock = 0;
    let yields = 0;
    const h = harness({
      maxBatch: 2,
      sliceMs: 5,
      now: () => clock,
      yieldToUI: async () => {
        yields++;
      },
    });
    t.after(() => h.tail.stop());
    h.log.append(...range(0, 10).map(String));
    const onRecords = h.got.push.bind(h.got);
    h.got.push = (...rs: TailRecord[]) => {
      clock += 3; // each batch "takes" 3ms
      return onRecords(...rs);
    };
    h.tail.start({ fromEnd: false, offset: 0n });
    await h.until(10);
    // 5 batches of 3ms with a 5ms slice: a yield after every second batch.
    assert.equal(yields, 2);
    assert.deepEqual(offsets(h.got), range(0, 10));
  });

  it("stop ends the loop and delivers nothing more", async () => {
    const h = harness();
    h.tail.start({ fromEnd: false, offset: 0n });
    h.log.append("a");
    await h.until(1);
    await h.tail.stop();
    h.log.append("b");
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(h.got.length, 1);
    assert.equal(h.tail.running, false);
  });
});

describe("toTailRecord", () => {
  const enc = (s: string) => new TextEncoder().encode(s);
  it("copies the bytes it keeps", () => {
    const buf = enc("keyvaluehv");
    const r = create(RecordSchema, {
      offset: 7n,
      key: buf.subarray(0, 3),
      value: buf.subarray(3, 8),
      headers: [{ key: "h", value: buf.subarray(8, 10) }],
    });
    const t = toTailRecord(r, 100);
    buf.fill(0);
    assert.deepEqual(t.key, enc("key"));
    assert.deepEqual(t.value, enc("value"));
    assert.deepEqual(t.headers[0].value, enc("hv"));
    assert.equal(t.key.buffer === buf.buffer, false);
    assert.equal(t.whole, true);
  });
  it("caps the key and keeps the headers that fit, in order", () => {
    const r = create(RecordSchema, {
      key: enc("0123456789"),
      headers: [
        { key: "a", value: enc("12") },
        { key: "b", value: enc("34") },
        { key: "c", value: enc("56") },
      ],
    });
    const t = toTailRecord(r, 6);
    assert.deepEqual(t.key, enc("012345"));
    assert.deepEqual(
      t.headers.map((h) => h.key),
      ["a", "b"],
    );
    assert.equal(t.whole, false);
    assert.equal(toTailRecord(r, Infinity).whole, true);
  });
});
