import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  formatRFC3339,
  formatTimeLocal,
  formatTimeShort,
  parseDateTimeLocal,
  timeFromMs,
  timeMs,
  toDateTimeLocal,
} from "../src/format.js";

// Local time is St. John's, Newfoundland: a half-hour offset that changes
// with daylight saving (UTC-03:30 in winter, UTC-02:30 in summer), so UTC
// and local time are never confused by accident. Node reads TZ when it
// changes; each test file runs in a process of its own.
process.env.TZ = "America/St_Johns";

const utc = (iso: string) => Date.parse(iso);

describe("formatRFC3339", () => {
  const cases: [bigint, number, string][] = [
    [0n, 0, "1970-01-01T00:00:00Z"],
    [1748779402n, 0, "2025-06-01T12:03:22Z"],
    [1748779402n, 120_000_000, "2025-06-01T12:03:22.120Z"],
    [1748779402n, 123_456_000, "2025-06-01T12:03:22.123456Z"],
    [1748779402n, 123_456_789, "2025-06-01T12:03:22.123456789Z"],
    [1748779402n, 5, "2025-06-01T12:03:22.000000005Z"],
    [-1n, 500_000_000, "1969-12-31T23:59:59.500Z"],
    [253402300799n, 999_999_999, "9999-12-31T23:59:59.999999999Z"],
  ];
  for (const [seconds, nanos, want] of cases) it(want, () => assert.equal(formatRFC3339({ seconds, nanos }), want));
  it("never throws on times a Date cannot hold", () => {
    assert.match(formatRFC3339({ seconds: 1n << 62n, nanos: 0 }), /^invalid time/);
    assert.match(formatRFC3339({ seconds: 0n, nanos: -1 }), /^invalid time/);
    assert.match(formatRFC3339({ seconds: 0n, nanos: 1e9 }), /^invalid time/);
  });
});

describe("timeMs and timeFromMs", () => {
  it("round trip", () => {
    for (const ms of [0, 1, 999, 1748779402120, -1, -1500]) assert.equal(timeMs(timeFromMs(ms)), ms);
  });
  it("nanos are within a second", () => assert.deepEqual(timeFromMs(-1500), { seconds: -2n, nanos: 500_000_000 }));
  it("sub-millisecond nanos are dropped", () => assert.equal(timeMs({ seconds: 1n, nanos: 999_999 }), 1000));
  it("NaN beyond a Date", () => assert.ok(Number.isNaN(timeMs({ seconds: 1n << 62n, nanos: 0 }))));
});

describe("formatTimeShort (local time)", () => {
  const now = utc("2025-07-01T15:00:00Z"); // 12:30 NDT
  const cases: [string, string, string][] = [
    ["same day: time with milliseconds", "2025-07-01T12:03:22.120Z", "09:33:22.120"],
    ["the local day, not the UTC day", "2025-07-01T02:00:00Z", "06-30 23:30:00"],
    ["earlier this year, in winter", "2025-01-15T12:00:00Z", "01-15 08:30:00"],
    ["another year", "2024-06-01T12:03:22Z", "2024-06-01 09:33"],
  ];
  for (const [name, at, want] of cases) it(name, () => assert.equal(formatTimeShort(utc(at), now), want));
  it("NaN", () => assert.equal(formatTimeShort(NaN, now), "?"));
});

describe("formatTimeLocal", () => {
  it("summer", () => assert.equal(formatTimeLocal(utc("2025-07-01T12:03:22.120Z")), "2025-07-01 09:33:22.120 UTC-02:30"));
  it("winter, whole seconds", () => assert.equal(formatTimeLocal(utc("2025-01-15T12:00:00Z")), "2025-01-15 08:30:00 UTC-03:30"));
  it("NaN", () => assert.equal(formatTimeLocal(NaN), "?"));
});

describe("datetime-local values", () => {
  it("toDateTimeLocal", () => assert.equal(toDateTimeLocal(utc("2025-07-01T12:03:22.999Z")), "2025-07-01T09:33:22"));
  const ok: [string, string][] = [
    ["2025-07-01T09:33", "2025-07-01T12:03:00.000Z"],
    ["2025-07-01T09:33:22", "2025-07-01T12:03:22.000Z"],
    ["2025-07-01T09:33:22.5", "2025-07-01T12:03:22.500Z"],
    ["2025-07-01 09:33:22.123", "2025-07-01T12:03:22.123Z"],
    [" 2025-01-15T08:30 ", "2025-01-15T12:00:00.000Z"],
  ];
  for (const [input, want] of ok) {
    it(`parses ${JSON.stringify(input)}`, () => assert.equal(new Date(parseDateTimeLocal(input) as number).toISOString(), want));
  }
  it("round trip", () => {
    const ms = utc("2025-11-02T03:04:05Z");
    assert.equal(parseDateTimeLocal(toDateTimeLocal(ms)), ms);
  });
  it("a wall-clock time daylight saving skips is accepted", () => {
    // 2025-03-09: clocks in St. John's go from 02:00 to 03:00.
    const got = parseDateTimeLocal("2025-03-09T02:30");
    assert.equal(typeof got, "number");
    assert.ok(Math.abs((got as number) - utc("2025-03-09T05:30:00Z")) <= 3600_000);
  });
  const bad: [string, RegExp][] = [
    ["", /^Pick a date and time\.$/],
    ["yesterday", /is not a date and time: use/],
    ["2025-02-30T10:00", /is not a date and time\.$/],
    ["2025-13-01T10:00", /is not a date and time\.$/],
    ["2025-01-01T24:00", /is not a date and time\.$/],
    ["2025-01-01T10:60", /is not a date and time\.$/],
    ["2025-01-01T10:00Z", /is not a date and time: use/],
  ];
  for (const [input, re] of bad) {
    it(`rejects ${JSON.stringify(input)}`, () => {
      const got = parseDateTimeLocal(input);
      assert.ok(got instanceof Error);
      assert.match(got.message, re);
    });
  }
});
