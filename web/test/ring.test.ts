import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Ring } from "../src/ring.js";

const size = (s: string) => s.length;

describe("Ring", () => {
  it("keeps items in order until full", () => {
    const r = new Ring<string>(3, 1000, size);
    assert.equal(r.length, 0);
    assert.equal(r.last(), undefined);
    r.push("a");
    r.push("b");
    assert.deepEqual(r.toArray(), ["a", "b"]);
    assert.equal(r.at(0), "a");
    assert.equal(r.last(), "b");
    assert.equal(r.evicted, 0);
  });

  it("drops the oldest past capacity", () => {
    const r = new Ring<string>(3, 1000, size);
    for (const s of ["a", "b", "c", "d", "e"]) r.push(s);
    assert.deepEqual(r.toArray(), ["c", "d", "e"]);
    assert.equal(r.evicted, 2);
    assert.equal(r.bytes, 3);
  });

  it("drops the oldest past maxBytes", () => {
    const r = new Ring<string>(100, 10, size);
    r.push("aaaa");
    r.push("bbbb");
    r.push("cccc"); // 12 bytes > 10: drop "aaaa"
    assert.deepEqual(r.toArray(), ["bbbb", "cccc"]);
    assert.equal(r.bytes, 8);
    r.push("x".repeat(50)); // larger than the bound: kept alone
    assert.equal(r.length, 1);
    assert.equal(r.bytes, 50);
    r.push("y");
    assert.deepEqual(r.toArray(), ["y"]);
    assert.equal(r.evicted, 4);
  });

  it("at is bounded", () => {
    const r = new Ring<string>(2, 100, size);
    r.push("a");
    for (const i of [-1, 1, 2, 0.5, NaN]) assert.equal(r.at(i), undefined, `at(${i})`);
  });

  it("clear resets", () => {
    const r = new Ring<string>(2, 100, size);
    for (const s of ["a", "b", "c"]) r.push(s);
    r.clear();
    assert.equal(r.length, 0);
    assert.equal(r.bytes, 0);
    assert.equal(r.evicted, 0);
    r.push("z");
    assert.deepEqual(r.toArray(), ["z"]);
  });

  it("stays bounded over many pushes", () => {
    const r = new Ring<{ n: number }>(1000, 1e9, () => 1);
    for (let i = 0; i < 100_000; i++) r.push({ n: i });
    assert.equal(r.length, 1000);
    assert.equal(r.at(0)?.n, 99_000);
    assert.equal(r.last()?.n, 99_999);
    assert.equal(r.evicted, 99_000);
  });

  it("rejects bad bounds", () => {
    assert.throws(() => new Ring<string>(0, 10, size), RangeError);
    assert.throws(() => new Ring<string>(1.5, 10, size), RangeError);
    assert.throws(() => new Ring<string>(1, 0, size), RangeError);
  });
});
