import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  decodeText,
  encodeProduce,
  formatBytes,
  formatCount,
  formatField,
  formatHeaders,
  formatRate,
  formatValue,
  hexDump,
  parseHeaders,
  parseOffset,
  previewValue,
  utf8Boundary,
} from "../src/format.js";

const enc = (s: string) => new TextEncoder().encode(s);

describe("formatValue", () => {
  const cases: { name: string; in: Uint8Array; kind: string; text: string; max?: number; truncated?: boolean }[] = [
    { name: "empty", in: new Uint8Array(), kind: "empty", text: "(empty)" },
    { name: "text", in: enc("hello world"), kind: "text", text: "hello world" },
    { name: "multi-line text", in: enc("a\nb\tc"), kind: "text", text: "a\nb\tc" },
    { name: "json object pretty", in: enc('{"a":1,"b":[true,null]}'), kind: "json", text: '{\n  "a": 1,\n  "b": [\n    true,\n    null\n  ]\n}' },
    { name: "json array", in: enc(" [1,2]"), kind: "json", text: "[\n  1,\n  2\n]" },
    { name: "broken json is text", in: enc('{"a":'), kind: "text", text: '{"a":' },
    { name: "bare number stays text", in: enc("42"), kind: "text", text: "42" },
    { name: "unicode", in: enc("héllo ✓ 😀"), kind: "text", text: "héllo ✓ 😀" },
    { name: "invalid utf-8 is hex", in: new Uint8Array([0xff, 0xfe, 0x41]), kind: "hex", text: "00000000  ff fe 41" + " ".repeat(41) + " |..A|" },
    { name: "control bytes are hex", in: new Uint8Array([0, 1, 2]), kind: "hex", text: "00000000  00 01 02" + " ".repeat(41) + " |...|" },
    { name: "truncated text", in: enc("abcdef"), max: 3, kind: "text", text: "abc", truncated: true },
    { name: "truncated json is text", in: enc('{"a":"bcdef"}'), max: 5, kind: "text", text: '{"a":', truncated: true },
    { name: "truncation respects utf-8", in: enc("aé"), max: 2, kind: "text", text: "a", truncated: true },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const got = formatValue(c.in, c.max);
      assert.equal(got.kind, c.kind);
      assert.equal(got.text, c.text);
      assert.equal(got.truncated, c.truncated ?? false);
    });
  }
});

describe("previewValue", () => {
  const cases: { name: string; in: Uint8Array; max?: number; kind: string; text: string }[] = [
    { name: "empty", in: new Uint8Array(), kind: "empty", text: "(empty)" },
    { name: "text", in: enc("hi"), kind: "text", text: "hi" },
    { name: "newlines marked", in: enc("a\r\nb\nc\td"), kind: "text", text: "a⏎b⏎c d" },
    { name: "json compacted", in: enc('{ "a" : 1,\n "b": 2 }'), kind: "json", text: '{"a":1,"b":2}' },
    { name: "long text cut", in: enc("abcdefghij"), max: 5, kind: "text", text: "abcd…" },
    { name: "hex", in: new Uint8Array([0xde, 0xad, 0xbe, 0xef, 0x00]), kind: "hex", text: "de ad be ef 00" },
    { name: "long hex cut", in: new Uint8Array(100).fill(0xab), max: 8, kind: "hex", text: "ab ab a…" },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const got = previewValue(c.in, c.max);
      assert.equal(got.kind, c.kind);
      assert.equal(got.text, c.text);
      assert.ok(got.text.length <= (c.max ?? 200));
    });
  }
  it("huge value is bounded", () => {
    const big = enc("x".repeat(1 << 20));
    const got = previewValue(big, 50);
    assert.equal(got.text.length, 50);
    assert.equal(got.truncated, true);
  });
});

describe("utf8Boundary", () => {
  const b = enc("a€b"); // 61 e2 82 ac 62
  const cases = [
    [0, 0],
    [1, 1],
    [2, 1],
    [3, 1],
    [4, 4],
    [5, 5],
    [99, 5],
  ];
  for (const [limit, want] of cases) {
    it(`limit ${limit}`, () => assert.equal(utf8Boundary(b, limit), want));
  }
  it("never panics on garbage", () => {
    const junk = new Uint8Array(10).fill(0x80);
    for (let i = 0; i <= 12; i++) {
      const n = utf8Boundary(junk, i);
      assert.ok(n >= 0 && n <= junk.length);
    }
  });
});

describe("decodeText", () => {
  it("accepts tabs and newlines", () => assert.equal(decodeText(enc("a\tb\r\n")), "a\tb\r\n"));
  it("rejects DEL", () => assert.equal(decodeText(new Uint8Array([0x41, 0x7f])), undefined));
  it("rejects overlong encodings", () => assert.equal(decodeText(new Uint8Array([0xc0, 0x80])), undefined));
});

describe("hexDump", () => {
  it("two lines with ascii", () => {
    const got = hexDump(enc("0123456789abcdefXY"));
    assert.equal(
      got,
      "00000000  30 31 32 33 34 35 36 37  38 39 61 62 63 64 65 66  |0123456789abcdef|\n" +
        "00000010  58 59" + " ".repeat(44) + " |XY|",
    );
    // The ASCII column lines up whatever the row's length.
    const lines = got.split("\n");
    assert.equal(lines[0].indexOf("|"), lines[1].indexOf("|"));
  });
});

describe("numbers", () => {
  const bytes: [number | bigint, string][] = [
    [0, "0 B"],
    [1023, "1023 B"],
    [1024, "1.0 KiB"],
    [1536, "1.5 KiB"],
    [10 * 1024 * 1024, "10 MiB"],
    [5n * 1024n ** 4n, "5.0 TiB"],
    [-1, "?"],
  ];
  for (const [n, want] of bytes) it(`formatBytes(${n})`, () => assert.equal(formatBytes(n), want));
  const counts: [number | bigint, string][] = [
    [0, "0"],
    [999, "999"],
    [1000, "1,000"],
    [1234567, "1,234,567"],
    [-1234, "-1,234"],
    [18446744073709551615n, "18,446,744,073,709,551,615"],
  ];
  for (const [n, want] of counts) it(`formatCount(${n})`, () => assert.equal(formatCount(n), want));
  const rates: [number, string][] = [
    [0, "0/s"],
    [0.25, "0.3/s"],
    [42.4, "42/s"],
    [1234, "1.23k/s"],
    [12345, "12.3k/s"],
    [2_500_000, "2.50M/s"],
    [NaN, "–"],
  ];
  for (const [n, want] of rates) it(`formatRate(${n})`, () => assert.equal(formatRate(n), want));
});

describe("parseOffset", () => {
  const ok: [string, bigint][] = [
    ["0", 0n],
    [" 42 ", 42n],
    ["1,000,000", 1000000n],
    ["18446744073709551615", 18446744073709551615n],
  ];
  for (const [s, want] of ok) it(`accepts ${JSON.stringify(s)}`, () => assert.equal(parseOffset(s), want));
  const bad: [string, RegExp][] = [
    ["", /Enter an offset/],
    ["-1", /not an offset/],
    ["1.5", /not an offset/],
    ["abc", /not an offset/],
    ["18446744073709551616", /larger than the largest offset/],
  ];
  for (const [s, re] of bad) {
    it(`rejects ${JSON.stringify(s)}`, () => {
      const got = parseOffset(s);
      assert.ok(got instanceof Error);
      assert.match(got.message, re);
    });
  }
});

describe("encodeProduce", () => {
  it("text passes through", () => assert.deepEqual(encodeProduce("not json", "text"), enc("not json")));
  it("valid json", () => assert.deepEqual(encodeProduce('{"a":1}', "json"), enc('{"a":1}')));
  it("invalid json", () => {
    const got = encodeProduce("{nope", "json");
    assert.ok(got instanceof Error);
    assert.match(got.message, /not valid JSON/);
  });
});

describe("formatField", () => {
  const cases: { name: string; in: Uint8Array; max?: number; kind: string; text: string; truncated?: boolean }[] = [
    { name: "empty", in: new Uint8Array(), kind: "empty", text: "(empty)" },
    { name: "text", in: enc("user-42"), kind: "text", text: "user-42" },
    { name: "unicode", in: enc("clé ✓"), kind: "text", text: "clé ✓" },
    { name: "line breaks stay", in: enc("a\nb"), kind: "text", text: "a\nb" },
    { name: "invalid utf-8 is hex", in: new Uint8Array([0x00, 0x01, 0xff]), kind: "hex", text: "00 01 ff" },
    { name: "lone continuation byte is hex", in: new Uint8Array([0x61, 0x80]), kind: "hex", text: "61 80" },
    { name: "control character is hex", in: new Uint8Array([0x61, 0x1b]), kind: "hex", text: "61 1b" },
    { name: "long text cut", in: enc("abcdef"), max: 4, kind: "text", text: "abcd…", truncated: true },
    { name: "cut keeps utf-8 whole", in: enc("aaé"), max: 3, kind: "text", text: "aa…", truncated: true },
    { name: "long hex cut", in: new Uint8Array([0xff, 0xfe, 0xfd]), max: 2, kind: "hex", text: "ff fe…", truncated: true },
  ];
  for (const c of cases) {
    it(c.name, () => assert.deepEqual(formatField(c.in, c.max), { kind: c.kind, text: c.text, truncated: c.truncated ?? false }));
  }
});

describe("formatHeaders", () => {
  it("keeps order and repeated keys; text or hex per value", () => {
    const got = formatHeaders([
      { key: "trace-id", value: enc("abc") },
      { key: "bin", value: new Uint8Array([0xde, 0xad, 0xbe, 0xef]) },
      { key: "trace-id", value: enc("def") },
      { key: "empty", value: new Uint8Array() },
    ]);
    assert.deepEqual(
      got.map((h) => [h.key, h.kind, h.text]),
      [
        ["trace-id", "text", "abc"],
        ["bin", "hex", "de ad be ef"],
        ["trace-id", "text", "def"],
        ["empty", "empty", "(empty)"],
      ],
    );
  });
  it("none", () => assert.deepEqual(formatHeaders([]), []));
});

describe("parseHeaders", () => {
  const text = (hs: { key: string; value: Uint8Array }[]) => hs.map((h) => [h.key, new TextDecoder().decode(h.value)]);
  const ok: [string, string[][]][] = [
    ["", []],
    ["  \n\n", []],
    ["a: 1", [["a", "1"]]],
    ["a:1\r\nb :  two words  \n\na: 3", [["a", "1"], ["b", "two words"], ["a", "3"]]],
    ["url: https://x/y?z=1", [["url", "https://x/y?z=1"]]],
    ["empty:", [["empty", ""]]],
    ["clé: ✓", [["clé", "✓"]]],
  ];
  for (const [input, want] of ok) {
    it(`accepts ${JSON.stringify(input)}`, () => {
      const got = parseHeaders(input);
      assert.ok(!(got instanceof Error), String(got));
      assert.deepEqual(text(got), want);
    });
  }
  const bad: [string, RegExp][] = [
    ["no colon", /^Header line 1: write a header as "key: value"\.$/],
    ["a: 1\n: no key", /^Header line 2:/],
    [`${"k".repeat(257)}: v`, /longer than 256 bytes/],
    [`${"é".repeat(129)}: v`, /longer than 256 bytes/],
  ];
  for (const [input, re] of bad) {
    it(`rejects ${JSON.stringify(input.slice(0, 20))}`, () => {
      const got = parseHeaders(input);
      assert.ok(got instanceof Error);
      assert.match(got.message, re);
    });
  }
});

// A seeded random sweep standing in for a fuzz target: formatting must never
// throw on arbitrary bytes from the network and must respect its bounds.
describe("formatting arbitrary bytes", () => {
  let seed = 0x2545f491;
  const rand = () => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) / 2 ** 32;
  };
  const alphabet = enc('{}[]":,0123456789 \n\tabcé€😀\\');
  it("never throws and stays bounded", () => {
    for (let n = 0; n < 3000; n++) {
      const len = Math.floor(rand() * 64);
      const b = new Uint8Array(len);
      const mostlyText = rand() < 0.5;
      for (let i = 0; i < len; i++) b[i] = mostlyText ? alphabet[Math.floor(rand() * alphabet.length)] : Math.floor(rand() * 256);
      const max = 1 + Math.floor(rand() * 40);
      const p = previewValue(b, max);
      assert.ok(p.text.length <= Math.max(max, "(empty)".length), `preview of ${hexDump(b)} is ${p.text.length} > ${max}`);
      assert.ok(!p.text.includes("\n"), "preview has a line break");
      const f = formatValue(b, 1 + Math.floor(rand() * 64));
      assert.ok(["empty", "json", "text", "hex"].includes(f.kind));
      if (f.kind === "json") assert.doesNotThrow(() => JSON.parse(f.text));
      const cut = utf8Boundary(b, Math.floor(rand() * (len + 2)));
      assert.ok(cut >= 0 && cut <= len);
      const field = formatField(b, 1 + Math.floor(rand() * 64));
      assert.ok(["empty", "text", "hex"].includes(field.kind));
    }
  });
});
