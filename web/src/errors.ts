// Turns RPC failures into plain sentences a person can act on.

import { Code, ConnectError } from "@connectrpc/connect";
import { AppendOutcomeSchema, AppendOutcome_Outcome, OffsetRangeSchema } from "./gen/log/v1/log_pb.js";

/** Action is what the ACL checks: see the server's policy file. */
export type Action = "produce" | "consume" | "admin";

/** Identity is what WhoAmI reported about this browser. */
export interface Identity {
  subject: string;
  authenticated: boolean;
  actions: string[];
}

/** ErrorContext is what the page knew when the call failed. */
export interface ErrorContext {
  /** action is what the failed call needed. */
  action: Action;
  identity?: Identity;
  /** offset is the offset the call asked for, if any. */
  offset?: bigint;
  /** topic and partition are what the call was about ("" is "default"). */
  topic?: string;
  partition?: number;
  /**
   * lowest and next are the log's bounds as the page last saw them; an
   * OffsetRange detail on the error, the bounds when the server answered,
   * takes precedence.
   */
  lowest?: bigint;
  next?: bigint;
}

/** offsetRange returns the log's bounds from an OUT_OF_RANGE error's OffsetRange detail, if it has one. */
export function offsetRange(err: unknown): { lowest: bigint; next: bigint } | undefined {
  const d = ConnectError.from(err).findDetails(OffsetRangeSchema)[0];
  return d && { lowest: d.lowest, next: d.next };
}

/**
 * appendOutcome returns what a failed produce's AppendOutcome detail says
 * happened: "not-applied" (retrying is safe), "unknown" (the records may
 * have been appended), or undefined when the error does not say.
 */
export function appendOutcome(err: unknown): "not-applied" | "unknown" | undefined {
  switch (ConnectError.from(err).findDetails(AppendOutcomeSchema)[0]?.outcome) {
    case AppendOutcome_Outcome.NOT_APPLIED:
      return "not-applied";
    case AppendOutcome_Outcome.UNKNOWN:
      return "unknown";
    default:
      return undefined;
  }
}

export const importHint =
  'import root.p12 from the server\'s data/certs directory (password "proglog") into your browser, then reload this page';

/** joinWords lists words as English: ["a","b","c"] -> "a, b and c" (or "a, b or c"). */
export function joinWords(words: string[], conj: "and" | "or" = "and"): string {
  if (words.length <= 1) return words.join("");
  return words.slice(0, -1).join(", ") + ` ${conj} ` + words[words.length - 1];
}

/** capitalize upper-cases the first letter of a sentence. */
function capitalize(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

/** permissionSentence explains a denial from what the ACL allows the subject. */
export function permissionSentence(action: Action, identity?: Identity): string {
  const who = identity ? identity.subject : "unknown";
  const others = (identity?.actions ?? []).filter((a) => a !== action && a !== "*");
  if (identity && !identity.authenticated) {
    return `You are not signed in with a client certificate, and anonymous visitors may not ${action}; ${importHint}.`;
  }
  if (others.length === 0) {
    return `This certificate (${who}) may not ${action}; the server's policy grants it nothing.`;
  }
  return `This certificate (${who}) may ${joinWords(others)} but not ${action}.`;
}

/**
 * describeError returns a sentence for err. Server messages are used only
 * for codes whose message is meant for people (InvalidArgument,
 * ResourceExhausted); the rest are explained from the error's details and
 * the page's own knowledge.
 */
export function describeError(err: unknown, ctx: ErrorContext): string {
  const ce = ConnectError.from(err);
  const s = describeCode(ce, ctx);
  // Whether a failed produce wrote anything matters for what to do next;
  // a denial, a refused record or a missing topic plainly did not.
  if (ctx.action === "produce" && !isAuthError(ce) && ce.code !== Code.InvalidArgument && ce.code !== Code.NotFound) {
    const outcome = appendOutcome(ce);
    if (outcome === "unknown") return `${s} The record may have been appended anyway: look before producing it again.`;
    if (outcome === "not-applied") return `${s} Nothing was appended, so trying again cannot duplicate it.`;
  }
  return s;
}

function describeCode(ce: ConnectError, ctx: ErrorContext): string {
  if (isNetworkError(ce)) return "The server cannot be reached; check that it is running.";
  switch (ce.code) {
    case Code.Unauthenticated:
      return `You are not signed in with a client certificate; ${importHint}.`;
    case Code.PermissionDenied:
      return permissionSentence(ctx.action, ctx.identity);
    case Code.OutOfRange: {
      const off = ctx.offset;
      const { lowest, next } = offsetRange(ce) ?? ctx;
      if (off !== undefined && next !== undefined && off >= next) {
        return `Offset ${off} is past the end (next is ${next}).`;
      }
      if (off !== undefined && lowest !== undefined && off < lowest) {
        return `Offset ${off} is no longer in the log (the oldest kept is ${lowest}).`;
      }
      const holds =
        lowest === undefined || next === undefined ? "" : lowest >= next ? " (it is empty)" : ` (it holds ${lowest}–${next - 1n})`;
      if (off !== undefined) return `Offset ${off} is outside the log${holds}.`;
      return `That offset is outside the log${holds}.`;
    }
    case Code.NotFound: {
      const topic = ctx.topic || "default";
      if (missing(ce) === "partition") {
        const has = /the topic has (.+)$/.exec(ce.rawMessage)?.[1];
        const which = ctx.partition !== undefined ? `partition ${ctx.partition}` : "that partition";
        return `Topic "${topic}" has no ${which}${has ? `: it has ${has}` : ""}.`;
      }
      return `Topic "${topic}" does not exist (it may have been deleted).`;
    }
    case Code.InvalidArgument:
      return `The server refused the request: ${ce.rawMessage}.`;
    case Code.ResourceExhausted:
      return `The request is too large for the server: ${ce.rawMessage}.`;
    case Code.Unavailable:
      return "The server cannot be reached; check that it is running.";
    case Code.DeadlineExceeded:
      return "The server took too long to answer.";
    case Code.Canceled:
      return "The request was cancelled.";
    case Code.Unimplemented:
      return "This server does not support that request; it may be an older version.";
    default:
      return capitalize(`the server failed (${Code[ce.code] ?? ce.code}): ${ce.rawMessage || "no details"}.`);
  }
}

// What fetch rejects with when no response arrived: Chromium, Firefox,
// Safari and Node word it differently.
const networkFailure = /^(Failed to fetch|NetworkError when attempting to fetch resource\.?|Load failed|fetch failed)$/;

/** isNetworkError reports whether a call failed without reaching the server. */
export function isNetworkError(err: unknown): boolean {
  const ce = ConnectError.from(err);
  if (ce.code !== Code.Unknown && ce.code !== Code.Unavailable) return false;
  const cause = ce.cause;
  return (cause instanceof TypeError && networkFailure.test(cause.message)) || networkFailure.test(ce.rawMessage);
}

/**
 * missing says what a NOT_FOUND error says is missing: the topic, or one
 * of its partitions (proglog's messages name which); undefined for other
 * errors.
 */
export function missing(err: unknown): "topic" | "partition" | undefined {
  const ce = ConnectError.from(err);
  if (ce.code !== Code.NotFound) return undefined;
  return /no such partition/.test(ce.rawMessage) ? "partition" : "topic";
}

/** isAuthError reports whether err is a denial that a new certificate or policy could fix. */
export function isAuthError(err: unknown): boolean {
  const c = ConnectError.from(err).code;
  return c === Code.Unauthenticated || c === Code.PermissionDenied;
}
