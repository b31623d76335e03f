import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { formatDuration, formatHash, formatReplication, formatRetention, parseHash, topicChoices, validTopic } from "../src/selection.js";

describe("parseHash and formatHash", () => {
  it("reads the hashes of older versions", () => {
    assert.deepEqual(parseHash(""), { view: "tail", topic: "default", partition: 0 });
    assert.deepEqual(parseHash("#tail"), { view: "tail", topic: "default", partition: 0 });
    assert.deepEqual(parseHash("#browse"), { view: "browse", topic: "default", partition: 0 });
  });
  it("round-trips places and leaves out the defaults", () => {
    const cases: [string, { view: "tail" | "browse"; topic: string; partition: number }][] = [
      ["#tail", { view: "tail", topic: "default", partition: 0 }],
      ["#browse", { view: "browse", topic: "default", partition: 0 }],
      ["#tail&topic=orders", { view: "tail", topic: "orders", partition: 0 }],
      ["#browse&topic=orders.v2_x-y&partition=2", { view: "browse", topic: "orders.v2_x-y", partition: 2 }],
      ["#tail&topic=default&partition=4294967295", { view: "tail", topic: "default", partition: 4294967295 }],
    ];
    for (const [hash, place] of cases) {
      assert.equal(formatHash(place), hash);
      assert.deepEqual(parseHash(hash), place);
    }
  });
  it("takes the defaults for what it cannot read", () => {
    assert.deepEqual(parseHash("#tail&topic=a%20b&partition=-1"), { view: "tail", topic: "default", partition: 0 });
    assert.deepEqual(parseHash("#x&topic=&partition=1e3"), { view: "tail", topic: "default", partition: 0 });
    assert.deepEqual(parseHash("#topic=t&partition=4294967296"), { view: "tail", topic: "t", partition: 0 });
    assert.deepEqual(parseHash("#view=browse&topic=t&partition=07"), { view: "browse", topic: "t", partition: 7 });
  });
});

describe("validTopic", () => {
  it("follows the server's rule", () => {
    assert.ok(validTopic("a"));
    assert.ok(validTopic("x".repeat(249)));
    assert.ok(!validTopic("x".repeat(250)));
    assert.ok(!validTopic(""));
    assert.ok(!validTopic("a/b"));
    assert.ok(!validTopic("ü"));
  });
});

describe("topicChoices", () => {
  it("puts default first, sorts the rest and keeps the current topic", () => {
    assert.deepEqual(topicChoices(["zeta", "default", "alpha"], "alpha"), ["default", "alpha", "zeta"]);
    assert.deepEqual(topicChoices([], "orders"), ["default", "orders"]);
    assert.deepEqual(topicChoices(["b"], "default"), ["default", "b"]);
    assert.deepEqual(topicChoices(["B", "a"], "default"), ["default", "B", "a"]);
  });
});

describe("formatDuration", () => {
  const cases: [bigint, number, string][] = [
    [0n, 0, "0 s"],
    [0n, 250_000_000, "250 ms"],
    [0n, 1, "1 ms"],
    [45n, 0, "45 s"],
    [90n, 0, "1 min 30 s"],
    [3600n, 0, "1 h"],
    [7n * 86400n, 0, "7 d"],
    [36n * 3600n, 0, "1 d 12 h"],
    [86400n + 300n, 0, "1 d"],
    [86400n + 3600n + 60n + 1n, 0, "1 d 1 h"],
  ];
  for (const [seconds, nanos, want] of cases) {
    it(`${seconds}s ${nanos}ns is ${want}`, () => assert.equal(formatDuration({ seconds, nanos }), want));
  }
});

describe("formatRetention", () => {
  it("says what a topic keeps", () => {
    assert.equal(formatRetention("t", undefined), "forever");
    assert.equal(formatRetention("t", { retentionBytes: 0n }), "forever");
    assert.equal(formatRetention("t", { retentionBytes: 0n, retentionAge: { seconds: 0n, nanos: 0 } }), "forever");
    assert.equal(formatRetention("t", { retentionBytes: 1n << 30n }), "1.0 GiB");
    assert.equal(formatRetention("t", { retentionBytes: 0n, retentionAge: { seconds: 604800n, nanos: 0 } }), "7 d");
    assert.equal(formatRetention("t", { retentionBytes: 64n << 10n, retentionAge: { seconds: 3600n, nanos: 0 } }), "1 h or 64 KiB");
  });
  it("leaves the default topic's to the nodes unless it has its own", () => {
    assert.equal(formatRetention("default", { retentionBytes: 0n }), "node's setting");
    assert.equal(formatRetention("default", { retentionBytes: 1024n }), "1.0 KiB");
  });
});

describe("formatReplication", () => {
  it("reads 0 as every node", () => {
    assert.equal(formatReplication(0), "all");
    assert.equal(formatReplication(3), "3");
  });
});
