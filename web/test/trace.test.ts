import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { newTraceParent, traceIdOf } from "../src/trace.js";

describe("newTraceParent", () => {
  it("makes a valid sampled version-00 traceparent", () => {
    const tp = newTraceParent();
    assert.match(tp.header, /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    assert.equal(traceIdOf(tp.header), tp.traceId);
    assert.equal(tp.header, `00-${tp.traceId}-${tp.spanId}-01`);
  });

  it("makes a new trace every time", () => {
    assert.notEqual(newTraceParent().traceId, newTraceParent().traceId);
  });

  it("never uses an all-zero id", () => {
    let calls = 0;
    // Zeros first, then 0x01s: the zeros must be drawn again.
    const tp = newTraceParent((b) => b.fill(calls++ < 1 ? 0 : 1));
    assert.equal(tp.traceId, "01".repeat(16));
    assert.equal(tp.spanId, "01".repeat(8));
  });
});

describe("traceIdOf", () => {
  it("refuses what is not a valid traceparent", () => {
    for (const bad of ["", "00-abc-def-01", `00-${"0".repeat(32)}-${"1".repeat(16)}-01`, `01-${"a".repeat(32)}-${"b".repeat(16)}-01`]) {
      assert.equal(traceIdOf(bad), undefined, bad);
    }
  });
});
