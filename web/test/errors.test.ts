import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import {
  appendOutcome,
  describeError,
  isAuthError,
  joinWords,
  missing,
  offsetRange,
  permissionSentence,
  type ErrorContext,
} from "../src/errors.js";
import { AppendOutcomeSchema, AppendOutcome_Outcome, LogService, OffsetRangeSchema } from "../src/gen/log/v1/log_pb.js";

/** rangeError is an OUT_OF_RANGE error as proglog sends it, with an OffsetRange detail. */
function rangeError(lowest: bigint, next: bigint, msg = "offset out of range"): ConnectError {
  return new ConnectError(msg, Code.OutOfRange, undefined, [{ desc: OffsetRangeSchema, value: { lowest, next } }]);
}

/** produceError is a failed produce with an AppendOutcome detail. */
function produceError(code: Code, outcome: AppendOutcome_Outcome): ConnectError {
  return new ConnectError("append failed", code, undefined, [{ desc: AppendOutcomeSchema, value: { outcome } }]);
}

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
      name: "the OffsetRange detail says past the end",
      err: rangeError(0n, 12n),
      ctx: { action: "consume", offset: 99999n },
      want: /^Offset 99999 is past the end \(next is 12\)\.$/,
    },
    {
      name: "the OffsetRange detail says below the lowest",
      err: rangeError(40n, 90n),
      ctx: { action: "consume", offset: 3n },
      want: /^Offset 3 is no longer in the log \(the oldest kept is 40\)\.$/,
    },
    {
      name: "the detail wins over the page's stale bounds",
      err: rangeError(40n, 90n),
      ctx: { action: "consume", offset: 30n, lowest: 0n, next: 50n },
      want: /^Offset 30 is no longer in the log \(the oldest kept is 40\)\.$/,
    },
    {
      name: "the detail without an offset",
      err: rangeError(40n, 90n),
      ctx: { action: "consume" },
      want: /^That offset is outside the log \(it holds 40–89\)\.$/,
    },
    {
      name: "the detail of an empty log",
      err: rangeError(7n, 7n),
      ctx: { action: "consume" },
      want: /^That offset is outside the log \(it is empty\)\.$/,
    },
    {
      name: "a produce that was not applied",
      err: produceError(Code.Unavailable, AppendOutcome_Outcome.NOT_APPLIED),
      ctx: { action: "produce" },
      want: /^The server cannot be reached; check that it is running\. Nothing was appended, so trying again cannot duplicate it\.$/,
    },
    {
      name: "a produce whose outcome is unknown",
      err: produceError(Code.Unavailable, AppendOutcome_Outcome.UNKNOWN),
      ctx: { action: "produce" },
      want: /^The server cannot be reached; check that it is running\. The record may have been appended anyway: look before producing it again\.$/,
    },
    {
      name: "a denied produce says only why",
      err: produceError(Code.PermissionDenied, AppendOutcome_Outcome.NOT_APPLIED),
      ctx: { action: "produce", identity: alice },
      want: /^This certificate \(alice\) may consume but not produce\.$/,
    },
    {
      name: "a refused record says only why",
      err: new ConnectError("record too large", Code.InvalidArgument, undefined, [
        { desc: AppendOutcomeSchema, value: { outcome: AppendOutcome_Outcome.NOT_APPLIED } },
      ]),
      ctx: { action: "produce" },
      want: /^The server refused the request: record too large\.$/,
    },
    {
      name: "invalid argument shows the server's reason",
      err: new ConnectError("record is 2 MiB, larger than 1 MiB", Code.InvalidArgument),
      ctx: { action: "produce" },
      want: /^The server refused the request: record is 2 MiB, larger than 1 MiB\.$/,
    },
    {
      name: "a topic that does not exist",
      err: new ConnectError('topic "orders": catalog: no such topic', Code.NotFound),
      ctx: { action: "consume", topic: "orders", partition: 1 },
      want: /^Topic "orders" does not exist \(it may have been deleted\)\.$/,
    },
    {
      name: "a partition the topic does not have",
      err: new ConnectError('topic "orders" partition 5: catalog: no such partition: the topic has 3 partitions (0 to 2)', Code.NotFound),
      ctx: { action: "consume", topic: "orders", partition: 5 },
      want: /^Topic "orders" has no partition 5: it has 3 partitions \(0 to 2\)\.$/,
    },
    {
      name: "a produce to a missing topic says only that",
      err: new ConnectError('topic "gone": catalog: no such topic', Code.NotFound, undefined, [
        { desc: AppendOutcomeSchema, value: { outcome: AppendOutcome_Outcome.NOT_APPLIED } },
      ]),
      ctx: { action: "produce", topic: "gone" },
      want: /^Topic "gone" does not exist \(it may have been deleted\)\.$/,
    },
    {
      name: "not found without a topic is about the default one",
      err: new ConnectError("catalog: no such topic", Code.NotFound),
      ctx: { action: "consume" },
      want: /^Topic "default" does not exist/,
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

describe("error details", () => {
  it("offsetRange reads the detail", () => assert.deepEqual(offsetRange(rangeError(3n, 9n)), { lowest: 3n, next: 9n }));
  it("offsetRange without a detail", () => {
    assert.equal(offsetRange(new ConnectError("offset 5 out of range [0, 3)", Code.OutOfRange)), undefined);
    assert.equal(offsetRange(new Error("x")), undefined);
  });
  it("appendOutcome", () => {
    assert.equal(appendOutcome(produceError(Code.Internal, AppendOutcome_Outcome.NOT_APPLIED)), "not-applied");
    assert.equal(appendOutcome(produceError(Code.Internal, AppendOutcome_Outcome.UNKNOWN)), "unknown");
    assert.equal(appendOutcome(produceError(Code.Internal, AppendOutcome_Outcome.UNSPECIFIED)), undefined);
    assert.equal(appendOutcome(new ConnectError("x", Code.Internal)), undefined);
  });

  // The details cross the wire as google.protobuf.Any, in the Connect
  // protocol's error JSON (unary) and end-of-stream message (streams).
  const transport = createRouterTransport(({ service }) => {
    service(LogService, {
      consume: () => {
        throw rangeError(5n, 9n, "offset 3 is below the lowest offset 5");
      },
      async *consumeStream() {
        throw rangeError(5n, 9n, "offset 12 is past the end");
      },
      produce: () => {
        throw produceError(Code.Unavailable, AppendOutcome_Outcome.UNKNOWN);
      },
    });
  });
  const client = createClient(LogService, transport);
  it("survive a unary call", async () => {
    const err = await client.consume({ offset: 3n }).then(
      () => assert.fail("consume succeeded"),
      (e: unknown) => e,
    );
    assert.deepEqual(offsetRange(err), { lowest: 5n, next: 9n });
    assert.equal(describeError(err, { action: "consume", offset: 3n }), "Offset 3 is no longer in the log (the oldest kept is 5).");
  });
  it("survive a stream", async () => {
    let err: unknown;
    try {
      for await (const _ of client.consumeStream({ offset: 12n })) assert.fail("got a message");
    } catch (e) {
      err = e;
    }
    assert.equal(describeError(err, { action: "consume", offset: 12n }), "Offset 12 is past the end (next is 9).");
  });
  it("survive a produce", async () => {
    const err = await client.produce({}).then(
      () => assert.fail("produce succeeded"),
      (e: unknown) => e,
    );
    assert.equal(appendOutcome(err), "unknown");
  });
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

describe("missing", () => {
  it("tells a missing topic from a missing partition", () => {
    assert.equal(missing(new ConnectError('topic "x": catalog: no such topic', Code.NotFound)), "topic");
    assert.equal(missing(new ConnectError('topic "x" partition 4: catalog: no such partition: the topic has 1 partition (0)', Code.NotFound)), "partition");
    assert.equal(missing(new ConnectError("no such partition", Code.OutOfRange)), undefined);
    assert.equal(missing(new Error("x")), undefined);
  });
});
