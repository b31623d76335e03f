import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { describeError, isAuthError, joinWords, permissionSentence, type ErrorContext } from "../src/errors.js";

const alice = { subject: "alice", authenticated: true, actions: ["consume"] };
const anon = { subject: "anonymous", authenticated: false, actions: [] };

describe("describeError", () => {
  const cases: { name: string; err: unknown; ctx: ErrorContext; want: RegExp }[] = [
    {
      name: "unauthenticated",
      err: new ConnectError('subject "anonymous" may not "produce"', Code.Unauthenticated),
      ctx: { action: "produce", identity: anon },
      want: /^You are not signed in with a client certificate; import root\.p12 .*password "proglog"/,
    },
    {
      name: "permission denied",
      err: new ConnectError('subject "alice" may not "produce"', Code.PermissionDenied),
      ctx: { action: "produce", identity: alice },
      want: /^This certificate \(alice\) may consume but not produce\.$/,
    },
    {
      name: "out of range past the end",
      err: new ConnectError("offset 10 out of range", Code.OutOfRange),
      ctx: { action: "consume", offset: 10n, lowest: 0n, next: 7n },
      want: /^Offset 10 is past the end \(next is 7\)\.$/,
    },
    {
      name: "out of range below the start",
      err: new ConnectError("gone", Code.OutOfRange),
      ctx: { action: "consume", offset: 3n, lowest: 5n, next: 9n },
      want: /^Offset 3 is no longer in the log \(the oldest kept is 5\)\.$/,
    },
    {
      name: "out of range without bounds",
      err: new ConnectError("x", Code.OutOfRange),
      ctx: { action: "consume", offset: 3n },
      want: /^Offset 3 is outside the log\.$/,
    },
    {
      name: "invalid argument shows the server's reason",
      err: new ConnectError("record is 2 MiB, larger than 1 MiB", Code.InvalidArgument),
      ctx: { action: "produce" },
      want: /^The server refused the request: record is 2 MiB, larger than 1 MiB\.$/,
    },
    {
      name: "unavailable",
      err: new ConnectError("fetch failed", Code.Unavailable),
      ctx: { action: "consume" },
      want: /cannot be reached/,
    },
    {
      name: "fetch failure in Chromium",
      err: new TypeError("Failed to fetch"),
      ctx: { action: "consume" },
      want: /^The server cannot be reached; check that it is running\.$/,
    },
    {
      name: "fetch failure in Firefox, wrapped by Connect",
      err: ConnectError.from(new TypeError("NetworkError when attempting to fetch resource.")),
      ctx: { action: "consume" },
      want: /cannot be reached/,
    },
    {
      name: "other errors name their code",
      err: new Error("boom"),
      ctx: { action: "consume" },
      want: /^The server failed \(Unknown\): boom\.$/,
    },
    {
      name: "internal",
      err: new ConnectError("disk on fire", Code.Internal),
      ctx: { action: "produce" },
      want: /^The server failed \(Internal\): disk on fire\.$/,
    },
  ];
  for (const c of cases) {
    it(c.name, () => assert.match(describeError(c.err, c.ctx), c.want));
  }
});

describe("permissionSentence", () => {
  const cases: { name: string; action: "produce" | "consume"; id?: typeof alice; want: string }[] = [
    { name: "some other rights", action: "produce", id: { subject: "bob", authenticated: true, actions: ["consume", "admin"] }, want: "This certificate (bob) may consume and admin but not produce." },
    { name: "no rights", action: "consume", id: { subject: "eve", authenticated: true, actions: [] }, want: "This certificate (eve) may not consume; the server's policy grants it nothing." },
    { name: "unknown identity", action: "produce", want: "This certificate (unknown) may not produce; the server's policy grants it nothing." },
  ];
  for (const c of cases) it(c.name, () => assert.equal(permissionSentence(c.action, c.id), c.want));
  it("anonymous is told to import a certificate", () => assert.match(permissionSentence("produce", anon), /root\.p12/));
});

describe("joinWords", () => {
  const cases: [string[], string][] = [
    [[], ""],
    [["a"], "a"],
    [["a", "b"], "a and b"],
    [["a", "b", "c"], "a, b and c"],
  ];
  for (const [w, want] of cases) it(JSON.stringify(w), () => assert.equal(joinWords(w), want));
  it("or", () => assert.equal(joinWords(["consume", "produce"], "or"), "consume or produce"));
});

describe("isAuthError", () => {
  it("classifies", () => {
    assert.equal(isAuthError(new ConnectError("", Code.Unauthenticated)), true);
    assert.equal(isAuthError(new ConnectError("", Code.PermissionDenied)), true);
    assert.equal(isAuthError(new ConnectError("", Code.OutOfRange)), false);
    assert.equal(isAuthError(new Error("x")), false);
  });
});
