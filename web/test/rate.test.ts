import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Backoff, RateMeter, Series } from "../src/rate.js";

describe("RateMeter", () => {
  it("is zero with fewer than two samples", () => {
    const m = new RateMeter(5000);
    assert.equal(m.rate(), 0);
    m.observe(0, 100);
    assert.equal(m.rate(), 0);
  });

  it("computes per-second rates", () => {
    const m = new RateMeter(5000);
    m.observe(0, 0);
    m.observe(1000, 500);
    assert.equal(m.rate(), 500);
    m.observe(2000, 1500);
    assert.equal(m.rate(), 750);
  });

  it("slides its window", () => {
    const m = new RateMeter(2000);
    for (let t = 0; t <= 10_000; t += 1000) m.observe(t, t < 5000 ? t * 10 : 50_000);
    // The last 2s saw no increase.
    assert.equal(m.rate(), 0);
  });

  it("restarts when the counter goes backwards", () => {
    const m = new RateMeter(5000);
    m.observe(0, 1000);
    m.observe(1000, 2000);
    m.observe(2000, 10); // a new log
    assert.equal(m.rate(), 0);
    m.observe(3000, 110);
    assert.equal(m.rate(), 100);
  });

  it("ignores zero-length intervals", () => {
    const m = new RateMeter(5000);
    m.observe(5, 1);
    m.observe(5, 2);
    assert.equal(m.rate(), 0);
  });
});

describe("Series", () => {
  it("keeps the last points", () => {
    const s = new Series(3, 2);
    for (let i = 0; i < 5; i++) s.add(i, i * 10, i * 100);
    assert.deepEqual(s.data(), [
      [2, 3, 4],
      [20, 30, 40],
      [200, 300, 400],
    ]);
    assert.equal(s.length, 3);
  });
  it("checks the number of values", () => {
    const s = new Series(3, 2);
    assert.throws(() => s.add(0, 1), RangeError);
  });
});

describe("Backoff", () => {
  const cases: { name: string; random: number; want: number[] }[] = [
    { name: "no jitter", random: 1, want: [250, 500, 1000, 2000, 4000, 8000, 10000, 10000] },
    { name: "most jitter", random: 0, want: [125, 250, 500, 1000, 2000, 4000, 5000, 5000] },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const b = new Backoff(250, 10_000, () => c.random);
      assert.deepEqual(
        c.want.map(() => b.next()),
        c.want,
      );
      b.reset();
      assert.equal(b.next(), c.want[0]);
    });
  }
  it("never overflows", () => {
    const b = new Backoff(250, 10_000, () => 1);
    for (let i = 0; i < 2000; i++) assert.ok(b.next() <= 10_000);
  });
});
