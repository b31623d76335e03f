// The dashboard page: wires the RPC client to the DOM. Logic worth testing
// lives in the DOM-free modules (format, ring, rate, errors, tail).

import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";
import "./style.css";
import { RateChart } from "./chart.js";
import { describeError, importHint, isAuthError, joinWords, missing, type Action, type Identity } from "./errors.js";
import {
  encodeProduce,
  formatBytes,
  formatCount,
  formatField,
  formatHeaders,
  formatRate,
  formatRFC3339,
  formatTimeLocal,
  formatTimeShort,
  formatValue,
  parseDateTimeLocal,
  parseHeaders,
  parseOffset,
  previewValue,
  timeFromMs,
  timeMs,
  toDateTimeLocal,
} from "./format.js";
import { LogService, type DescribeTopicResponse, type Topic } from "./gen/log/v1/log_pb.js";
import { RateMeter, Series } from "./rate.js";
import { Ring } from "./ring.js";
import { defaultTopic, formatHash, formatReplication, formatRetention, parseHash, topicChoices, type Selection, type View } from "./selection.js";
import { Tail, toTailRecord, type TailRecord, type TailSource, type TailStatus } from "./tail.js";
import { newTraceParent } from "./trace.js";
import { VirtualList } from "./vlist.js";

const backlog = 100; // records shown when the tail starts at the end
const pageSize = 50; // records per browse page
const keepBytes = 4096; // bytes a list keeps of each value, key and the headers
const rowHeight = 22; // px, matches --row in style.css
const statsEveryMs = 1000;
const statsTimeoutMs = 5000;
const serversEveryMs = 5000;
const topicsEveryMs = 5000;
const identityEveryMs = 15000;

function $<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`dashboard: #${id} is missing from index.html`);
  return el as T;
}

/** say shows text in el, or hides el when text is empty. */
function say(el: HTMLElement, text: string): void {
  el.textContent = text;
  el.hidden = text === "";
}

// ---- transport -------------------------------------------------------------

const grpcWeb = new URLSearchParams(location.search).get("transport") === "grpc-web";
const transport = grpcWeb
  ? createGrpcWebTransport({ baseUrl: location.origin, useBinaryFormat: true })
  : createConnectTransport({ baseUrl: location.origin, useBinaryFormat: true, useHttpGet: true });
const client = createClient(LogService, transport);
const transportLink = document.createElement("a");
transportLink.textContent = grpcWeb ? "use the Connect protocol" : "use gRPC-Web";
$("transport").append(`Talking to ${location.host} with ${grpcWeb ? "gRPC-Web" : "the Connect protocol"} · `, transportLink);

// ---- shared state -----------------------------------------------------------

let identity: Identity | undefined;
/** bounds are the selected partition's, as GetStats last said. */
let bounds: { lowest: bigint; next: bigint } | undefined;

// The partition the tail, Browse and the overview follow, and the records
// view showing it; the URL's hash keeps them (see selection.ts). A new
// selection is a new object, so a reply can tell whether it is stale.
const initial = parseHash(location.hash);
let sel: Selection = { topic: initial.topic, partition: initial.partition };
let view: View = initial.view;

/** source is what a request about a selection names: topic "" is "default". */
function source(at: Selection = sel): TailSource {
  return { topic: at.topic === defaultTopic ? "" : at.topic, partition: at.partition };
}

function context(action: Action, offset?: bigint, at: Selection = sel) {
  return { action, identity, offset, lowest: bounds?.lowest, next: bounds?.next, topic: at.topic, partition: at.partition };
}

function writeHash(): void {
  const hash = formatHash({ view, ...sel });
  history.replaceState(null, "", hash);
  transportLink.href = (grpcWeb ? "?" : "?transport=grpc-web") + hash;
}

/**
 * explain is describeError for panels that are not the point of the user's
 * action: when the banner already says to sign in, they only point at it.
 */
function explain(err: unknown, action: Action, offset?: bigint): string {
  if (identity && !identity.authenticated && ConnectError.from(err).code === Code.Unauthenticated) {
    return `Anonymous visitors may not ${action}: sign in with a client certificate (see above).`;
  }
  return describeError(err, context(action, offset));
}

// ---- identity ---------------------------------------------------------------

async function refreshIdentity(): Promise<void> {
  const subject = $("identity-subject");
  try {
    const r = await client.whoAmI({});
    identity = { subject: r.subject, authenticated: r.authenticated, actions: [...r.actions] };
  } catch (e) {
    identity = undefined;
    subject.textContent = "unknown";
    subject.className = "subject";
    say($("identity-actions"), "");
    say($("identity-hint"), `Cannot tell who you are: ${describeError(e, { action: "consume" })}`);
    return;
  }
  const id = identity;
  subject.textContent = id.authenticated ? id.subject : "anonymous";
  subject.className = `subject ${id.authenticated ? "signed-in" : "anonymous"}`;
  subject.title = id.authenticated ? "the Common Name of your client certificate" : "no client certificate";
  say($("identity-actions"), id.actions.length > 0 ? `may ${joinWords(id.actions)}` : "may do nothing");
  const lacks = ["consume", "produce"].filter((a) => !id.actions.includes(a));
  say(
    $("identity-hint"),
    !id.authenticated && lacks.length > 0
      ? `You are not signed in with a client certificate, so you may not ${joinWords(lacks, "or")}. To use the dashboard as root, ${importHint}.`
      : "",
  );
}

// ---- overview ---------------------------------------------------------------

let appendMeter = new RateMeter(5000);
const tailMeter = new RateMeter(5000);
let series = new Series(120, 2);
const chart = new RateChart($("chart"));
let received = 0; // records the tail delivered since the page loaded

let statsSkip = 0; // polls to skip: a denied caller polls less often

async function pollStats(): Promise<void> {
  const now = performance.now();
  if (statsSkip > 0) statsSkip--;
  else await fetchStats(now);
  tailMeter.observe(now, received);
  const a = appendMeter.rate();
  const t = tailMeter.rate();
  $("st-append").textContent = formatRate(a);
  $("st-consume").textContent = formatRate(t);
  series.add(Date.now() / 1000, a, t);
  if (!document.hidden && series.length > 1) chart.setData(series.data());
}

/** resetOverview forgets the previous selection's figures. */
function resetOverview(): void {
  bounds = undefined;
  appendMeter = new RateMeter(5000);
  series = new Series(120, 2);
  chart.setData(series.data());
  for (const id of ["st-lowest", "st-next", "st-records", "st-size", "st-segments", "st-append"]) $(id).textContent = "–";
  say($("stats-error"), "");
}

async function fetchStats(now: number): Promise<void> {
  const at = sel;
  try {
    // A deadline, so a call stuck on a connection that died (a server
    // restart) cannot stop the poll, which waits for each call.
    const s = await client.getStats(source(at), { timeoutMs: statsTimeoutMs });
    if (at !== sel) return; // another partition was selected meanwhile
    bounds = { lowest: s.lowestOffset, next: s.nextOffset };
    $("st-lowest").textContent = formatCount(s.lowestOffset);
    $("st-next").textContent = formatCount(s.nextOffset);
    $("st-records").textContent = formatCount(s.nextOffset - s.lowestOffset);
    $("st-size").textContent = formatBytes(s.sizeBytes);
    $("st-segments").textContent = formatCount(s.segments);
    $("node").textContent = `node ${s.nodeId || "?"} · ${s.version || "unknown version"}`;
    appendMeter.observe(now, Number(s.nextOffset));
    say($("stats-error"), "");
    $("chart").hidden = false;
  } catch (e) {
    if (at !== sel) return;
    say($("stats-error"), explain(e, "consume"));
    if (missing(e)) void lost(at, e);
    $("node").textContent = "";
    if (isAuthError(e)) {
      $("chart").hidden = true; // nothing to plot for a caller who may not look
      statsSkip = 4;
      void refreshIdentity().then(() => say($("stats-error"), explain(e, "consume")));
    }
  }
}

async function pollServers(): Promise<void> {
  const ul = $("members");
  try {
    const r = await client.getServers({});
    ul.replaceChildren(
      ...r.servers.map((s) => {
        const li = document.createElement("li");
        li.textContent = `${s.id} ${s.rpcAddr}`;
        li.dataset.id = s.id;
        const leads = document.createElement("span");
        leads.className = "leads";
        leads.textContent = `leads ${s.partitionLeaders} partition${s.partitionLeaders === 1 ? "" : "s"}`;
        leads.title = "how many partitions of all topics this node leads";
        li.append(leads);
        if (s.isLeader) {
          const tag = document.createElement("span");
          tag.className = "leader";
          tag.textContent = "leader";
          tag.title = "leads the system group: the topic catalogue and the topic default";
          li.append(tag);
        }
        return li;
      }),
    );
    if (r.servers.length === 0) ul.replaceChildren(Object.assign(document.createElement("li"), { textContent: "none reported", className: "muted" }));
  } catch (e) {
    const show = () => ul.replaceChildren(Object.assign(document.createElement("li"), { textContent: explain(e, "consume"), className: "error" }));
    show();
    if (isAuthError(e) && !identity) void refreshIdentity().then(show);
  }
}

/** every runs f now and then again ms after each run finishes, so calls never pile up. */
function every(ms: number, f: () => Promise<void>): void {
  const run = () => void f().finally(() => setTimeout(run, ms));
  run();
}

// ---- topics and partitions ---------------------------------------------------

/** topics is what ListTopics last said, by name (topics the caller may use). */
let topics = new Map<string, Topic>();
/** topicsSupported is false for servers from before topics: only "default" exists. */
let topicsSupported = true;
/** described is DescribeTopic's last answer about the selected topic. */
let described: DescribeTopicResponse | undefined;

/** partitionCount is how many partitions the topic has, if the page knows. */
function partitionCount(topic: string): number | undefined {
  if (described?.topic?.name === topic) return described.topic.partitions;
  if (topics.has(topic)) return topics.get(topic)!.partitions;
  return topicsSupported ? undefined : 1;
}

/** setOptions makes a select offer values (labelled by label), keeping its value when it still can. */
function setOptions(el: HTMLSelectElement, values: string[], label: (v: string) => string = (v) => v): void {
  const same = el.options.length === values.length && values.every((v, i) => el.options[i].value === v && el.options[i].text === label(v));
  if (!same) el.replaceChildren(...values.map((v) => new Option(label(v), v)));
}

function range(n: number): string[] {
  return Array.from({ length: n }, (_, i) => String(i));
}

/** renderWhere shows the selection in the selectors, headings and the Topics panel. */
function renderWhere(): void {
  setOptions($<HTMLSelectElement>("topic-select"), topicChoices([...topics.keys()], sel.topic));
  $<HTMLSelectElement>("topic-select").value = sel.topic;
  // Until the topic's partitions are known, offer those up to the selected one.
  const n = partitionCount(sel.topic) ?? sel.partition + 1;
  const ps = $<HTMLSelectElement>("partition-select");
  setOptions(ps, range(Math.max(n, sel.partition + 1)));
  ps.value = String(sel.partition);
  const pp = $<HTMLSelectElement>("produce-partition");
  const keep = pp.value;
  setOptions(pp, ["auto", ...range(Math.max(n, 1))]);
  pp.value = pp.querySelector(`option[value="${keep}"]`) ? keep : String(sel.partition);

  const t = described?.topic?.name === sel.topic ? described.topic : topics.get(sel.topic);
  $("where-info").textContent = t
    ? `${t.partitions} partition${t.partitions === 1 ? "" : "s"} · ` +
      `${t.replicationFactor > 0 ? `replication ${t.replicationFactor}` : "on every node"} · keeps ${formatRetention(t.name, t.config)}`
    : "";
  $("st-where").textContent = `${sel.topic} · partition ${sel.partition}`;
  $("produce-where").textContent = `to ${sel.topic}`;
  renderTopics();
}

function cell(text: string, className = ""): HTMLTableCellElement {
  const td = document.createElement("td");
  td.textContent = text;
  td.className = className;
  return td;
}

function linkButton(text: string, title: string, onClick: () => void): HTMLButtonElement {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "link";
  b.textContent = text;
  b.title = title;
  b.addEventListener("click", onClick);
  return b;
}

/** renderTopics fills the Topics panel: every topic, and the selected one's partitions. */
function renderTopics(): void {
  $("topics-card").hidden = !topicsSupported;
  if (!topicsSupported) return;
  $("topics-body").replaceChildren(
    ...topicChoices([...topics.keys()], sel.topic)
      .filter((name) => topics.has(name))
      .map((name) => {
        const t = topics.get(name)!;
        const tr = document.createElement("tr");
        tr.dataset.topic = name;
        tr.classList.toggle("selected", name === sel.topic);
        const td = document.createElement("td");
        td.append(linkButton(name, `show ${name}`, () => choose(name, 0)));
        tr.append(td, cell(String(t.partitions), "num"), cell(formatReplication(t.replicationFactor), "num"), cell(formatRetention(name, t.config)));
        return tr;
      }),
  );
  const d = described?.topic?.name === sel.topic ? described : undefined;
  $("partitions-title").textContent = `Partitions of ${sel.topic}`;
  $("partitions-body").replaceChildren(
    ...(d?.partitions ?? []).map((p) => {
      const tr = document.createElement("tr");
      tr.dataset.partition = String(p.partition);
      tr.classList.toggle("selected", p.partition === sel.partition);
      const num = document.createElement("td");
      num.className = "num";
      num.append(linkButton(String(p.partition), `show partition ${p.partition}`, () => choose(sel.topic, p.partition)));
      const replicas = document.createElement("td");
      replicas.append(
        ...p.replicas.map((r) => {
          const span = document.createElement("span");
          span.className = `replica ${r.inSync ? "in-sync" : "behind"}${r.isLeader ? " leader" : ""}`;
          span.textContent = `${r.nodeId}${r.inSync ? "✓" : "✗"}`;
          span.title = `${r.nodeId} (${r.rpcAddr})${r.isLeader ? ", the leader" : ""}: ${r.inSync ? "in sync" : "not in sync"}`;
          return span;
        }),
      );
      tr.append(
        num,
        cell(p.leader || "none", p.leader ? "" : "none"),
        replicas,
        cell(formatCount(p.lowestOffset), "num"),
        cell(formatCount(p.nextOffset), "num"),
        cell(formatBytes(p.sizeBytes), "num"),
      );
      return tr;
    }),
  );
}

/** refreshTopics asks for the topics and the selected one's partitions. */
async function refreshTopics(): Promise<void> {
  try {
    const r = await client.listTopics({});
    topics = new Map(r.topics.map((t) => [t.name, t]));
    topicsSupported = true;
    say($("topics-error"), "");
  } catch (e) {
    if (ConnectError.from(e).code === Code.Unimplemented) topicsSupported = false; // a server from before topics
    else say($("topics-error"), explain(e, "consume"));
  }
  await describeSelected();
}

let describing: { at: Selection; done: Promise<void> } | undefined;

/**
 * describeSelected asks about the selected topic. A topic that no longer
 * exists falls back to "default", a partition it does not have to
 * partition 0; cause is the error that made the page ask, if one did.
 */
function describeSelected(cause?: unknown): Promise<void> {
  if (describing?.at !== sel) {
    // One question at a time about a selection: a vanished topic fails
    // the tail, the overview and Browse at once.
    const d: { at: Selection; done: Promise<void> } = {
      at: sel,
      done: describeOnce(cause).finally(() => {
        if (describing === d) describing = undefined;
      }),
    };
    describing = d;
    return d.done;
  }
  return describing.done;
}

async function describeOnce(cause?: unknown): Promise<void> {
  const at = sel;
  if (!topicsSupported) {
    renderWhere();
    return;
  }
  let d: DescribeTopicResponse;
  try {
    d = await client.describeTopic({ name: at.topic });
  } catch (e) {
    if (at !== sel) return;
    described = undefined;
    if (missing(e) === "topic" && at.topic !== defaultTopic) {
      topics.delete(at.topic);
      choose(defaultTopic, 0, `${describeError(e, context("consume", undefined, at))} Showing "${defaultTopic}".`);
      return;
    }
    const code = ConnectError.from(e).code;
    if (code === Code.Unimplemented) topicsSupported = false;
    // A denial reads the same as ListTopics's, shown just above.
    const repeat = isAuthError(e) && !$("topics-error").hidden;
    say($("describe-error"), code === Code.Unimplemented || repeat ? "" : explain(e, "consume"));
    renderWhere();
    return;
  }
  if (at !== sel) return;
  described = d;
  if (d.topic) topics.set(d.topic.name, d.topic);
  say($("describe-error"), "");
  const n = d.topic?.partitions ?? d.partitions.length;
  if (n > 0 && at.partition >= n) {
    const err = missing(cause) === "partition" ? cause : new ConnectError(`no such partition: the topic has ${n} partition${n === 1 ? "" : "s"}`, Code.NotFound);
    choose(at.topic, 0, `${describeError(err, context("consume", undefined, at))} Showing partition 0.`);
    return;
  }
  renderWhere();
}

/**
 * lost handles a NOT_FOUND about the selection at: the page asks whether
 * the topic (or the partition) is gone and falls back if so.
 */
function lost(at: Selection, err: unknown): Promise<void> {
  return at === sel ? describeSelected(err) : Promise.resolve();
}

/**
 * choose selects a partition: the tail restarts at its end, Browse shows
 * its newest page, the overview follows it. note, if any, says why the page
 * chose it (the previous one is gone); a choice of the user's clears it.
 */
function choose(topic: string, partition: number, note = ""): void {
  say($("where-note"), note);
  if (topic === sel.topic && partition === sel.partition) return;
  const newTopic = topic !== sel.topic;
  sel = { topic, partition };
  if (newTopic) described = undefined;
  writeHash();
  $<HTMLSelectElement>("produce-partition").value = String(partition);
  renderWhere();
  resetOverview();
  closeDetail();
  // The tail starts at the new partition's end; an offset typed for the
  // old one means nothing there.
  $<HTMLSelectElement>("tail-from").value = "latest";
  $("tail-offset").hidden = true;
  startTail();
  resetBrowse();
  void fetchStats(performance.now());
  if (newTopic) void describeSelected();
}

$("topic-select").addEventListener("change", () => {
  choose($<HTMLSelectElement>("topic-select").value, 0);
});
$("partition-select").addEventListener("change", () => {
  choose(sel.topic, Number($<HTMLSelectElement>("partition-select").value));
});
$("where").addEventListener("submit", (e) => e.preventDefault());
// Topics come and go: look again when the page comes back into view.
window.addEventListener("focus", () => void refreshTopics());
document.addEventListener("visibilitychange", () => {
  if (!document.hidden) void refreshTopics();
});
// Someone edits the hash by hand, or follows a link to another selection.
window.addEventListener("hashchange", () => {
  const p = parseHash(location.hash);
  choose(p.topic, p.partition);
  selectTab(p.view);
});

// ---- rows and the detail view ----------------------------------------------

let selected: bigint | undefined;
const shown = new WeakMap<HTMLElement, { rec: TailRecord; selected: boolean }>();

function createRow(): HTMLElement {
  const row = document.createElement("div");
  row.className = "row";
  for (const c of ["off", "time", "size", "value"]) {
    const span = document.createElement("span");
    span.className = c;
    row.append(span);
  }
  // The value column starts with the key, when the record has one.
  const key = document.createElement("span");
  key.className = "key";
  row.lastElementChild!.append(key, document.createElement("span"));
  return row;
}

function renderRow(row: HTMLElement, rec: TailRecord): void {
  const isSel = rec.offset === selected;
  const prev = shown.get(row);
  if (prev && prev.rec === rec && prev.selected === isSel) return; // unchanged: skip the formatting
  shown.set(row, { rec, selected: isSel });
  const [off, time, size, cell] = row.children as unknown as HTMLElement[];
  const [key, value] = cell.children as unknown as HTMLElement[];
  off.textContent = rec.offset.toString();
  if (rec.time) {
    time.textContent = formatTimeShort(timeMs(rec.time));
    time.title = formatRFC3339(rec.time);
  } else {
    time.textContent = "";
    time.title = "";
  }
  size.textContent = formatBytes(rec.size);
  key.hidden = rec.key.length === 0;
  if (!key.hidden) {
    const k = previewValue(rec.key, 40);
    key.textContent = k.text;
    key.className = `key k-${k.kind}`;
    key.title = k.kind === "hex" ? "key (not text: shown as hex)" : "key";
  }
  const p = previewValue(rec.value, 300);
  value.textContent = p.text;
  value.className = `v-${p.kind}`;
  row.classList.toggle("selected", isSel);
  row.dataset.offset = rec.offset.toString();
}

/** fieldText shows a key or header value in el, styled by its kind. */
function fieldText(el: HTMLElement, bytes: Uint8Array): void {
  const f = formatField(bytes);
  el.textContent = f.text;
  el.className = `f-${f.kind}`;
  el.title = f.kind === "hex" ? "not text: shown as hex" : "";
}

/** renderFields fills the detail view's time, key and headers. */
function renderFields(rec: TailRecord): void {
  $("detail-time-row").hidden = !rec.time;
  if (rec.time) {
    $("detail-time").textContent = formatRFC3339(rec.time);
    $("detail-time-local").textContent = `(${formatTimeLocal(timeMs(rec.time))})`;
  }
  $("detail-key-row").hidden = rec.key.length === 0;
  fieldText($("detail-key"), rec.key);
  $("detail-headers-row").hidden = rec.headers.length === 0;
  $("detail-headers").replaceChildren(
    ...formatHeaders(rec.headers).map((h) => {
      const tr = document.createElement("tr");
      const k = document.createElement("td");
      k.textContent = h.key;
      const v = document.createElement("td");
      v.textContent = h.text;
      v.className = `f-${h.kind}`;
      tr.append(k, v);
      return tr;
    }),
  );
}

async function showDetail(rec: TailRecord): Promise<void> {
  const at = sel;
  selected = rec.offset;
  tailList.redraw();
  for (const row of $("browse-list").children) (row as HTMLElement).classList.toggle("selected", (row as HTMLElement).dataset.offset === rec.offset.toString());
  const pre = $("detail-value");
  $("detail").hidden = false;
  $("detail-title").textContent = `Offset ${rec.offset}`;
  let full = rec;
  let partial = ""; // why only what the list kept is shown
  renderFields(rec);
  if (!rec.whole) {
    $("detail-meta").textContent = `${formatBytes(rec.size)} · loading…`;
    pre.textContent = "";
    try {
      const r = await client.consume({ offset: rec.offset, ...source(at) });
      if (r.record) full = toTailRecord(r.record, Infinity);
    } catch (e) {
      partial = ` · only the start is shown: ${describeError(e, context("consume", rec.offset, at))}`;
      if (missing(e)) void lost(at, e);
    }
  }
  if (selected !== rec.offset || at !== sel) return; // another row or partition was picked meanwhile
  renderFields(full);
  const f = formatValue(full.value);
  $("detail-meta").textContent = `${formatBytes(rec.size)} · ${f.kind}${f.truncated ? " · first 1 MiB shown" : ""}${partial}`;
  pre.textContent = f.text;
}

function closeDetail(): void {
  selected = undefined;
  $("detail").hidden = true;
  tailList.redraw();
}
$("detail-close").addEventListener("click", closeDetail);

// ---- live tail --------------------------------------------------------------

const ring = new Ring<TailRecord>(10_000, 32 << 20, (r) => {
  let n = r.value.length + r.key.length + 120;
  for (const h of r.headers) n += h.key.length + h.value.length + 40;
  return n;
});
let evictedShown = 0;
let tailFrame = 0;

const tailList = new VirtualList<TailRecord>($("tail-list"), {
  rowHeight,
  createRow,
  renderRow,
  onSelect: (rec) => void showDetail(rec),
  onFollow: (on) => {
    $("tail-follow").hidden = on;
  },
});
$("tail-follow").addEventListener("click", () => {
  tailList.follow = true;
});

/** drawTail runs once per animation frame however many batches arrived. */
function drawTail(): void {
  tailFrame = 0;
  tailList.update(ring.length, (i) => ring.at(i), ring.evicted - evictedShown);
  evictedShown = ring.evicted;
  $("tail-counts").textContent =
    `${formatCount(received)} received · showing ${formatCount(ring.length)}` +
    (ring.length > 0 ? ` (${ring.at(0)!.offset}–${ring.last()!.offset})` : "");
}

function scheduleTail(): void {
  if (!tailFrame) tailFrame = requestAnimationFrame(drawTail);
}

const tail = new Tail({
  client,
  maxBatch: 500,
  maxValueBytes: keepBytes,
  lowest: async (signal, src) => (await client.getStats(src, { signal })).lowestOffset,
  onRecords: (batch) => {
    for (const r of batch) ring.push(r);
    received += batch.length;
    scheduleTail();
  },
  onStatus: renderTailStatus,
});

function renderTailStatus(s: TailStatus): void {
  const el = $("tail-status");
  el.className = `status ${s.state}`;
  const pause = $<HTMLButtonElement>("tail-pause");
  pause.textContent = s.state === "paused" || s.state === "stopped" ? "Resume" : "Pause";
  let err = "";
  switch (s.state) {
    case "idle":
      el.textContent = "idle";
      break;
    case "connecting":
      el.textContent = "waiting for records…";
      break;
    case "following":
      el.textContent = "live";
      break;
    case "paused":
      el.textContent = s.next !== undefined ? `paused before offset ${s.next}` : "paused";
      break;
    case "retrying":
      el.textContent = `reconnecting in ${(s.inMs / 1000).toFixed(1)}s`;
      err = describeError(s.error, context("consume", tail.next));
      break;
    case "skipped":
      el.textContent = "skipping ahead";
      say(
        $("tail-note"),
        `Records ${s.from}–${s.to - 1n} were removed by retention before the tail read them; continuing at ${s.to}.`,
      );
      break;
    case "stopped":
      el.textContent = "stopped";
      err = explain(s.error, "consume", tail.next ?? startOffset);
      if (missing(s.error)) void lost(sel, s.error);
      if (isAuthError(s.error)) void refreshIdentity().then(() => say($("tail-error"), explain(s.error, "consume")));
      break;
  }
  say($("tail-error"), err);
}

let startOffset: bigint | undefined;

function startTail(): void {
  const from = $<HTMLSelectElement>("tail-from").value;
  say($("tail-error"), "");
  let start: { fromEnd: true; backlog: number } | { fromEnd: false; offset: bigint };
  if (from === "offset") {
    const off = parseOffset($<HTMLInputElement>("tail-offset").value);
    if (off instanceof Error) {
      say($("tail-error"), off.message);
      return;
    }
    start = { fromEnd: false, offset: off };
    startOffset = off;
  } else {
    start = { fromEnd: true, backlog };
    startOffset = undefined;
  }
  ring.clear();
  evictedShown = 0;
  say($("tail-note"), "");
  tailList.follow = true;
  scheduleTail();
  tail.start(start, source());
}

$("tail-from").addEventListener("change", () => {
  const byOffset = $<HTMLSelectElement>("tail-from").value === "offset";
  $("tail-offset").hidden = !byOffset;
  if (byOffset) $("tail-offset").focus();
});
$("tail-form").addEventListener("submit", (e) => {
  e.preventDefault();
  startTail();
});
$("tail-pause").addEventListener("click", () => {
  if (tail.running) tail.pause();
  else tail.resume();
});
$("tail-clear").addEventListener("click", () => {
  ring.clear();
  evictedShown = 0;
  scheduleTail();
});

// ---- browse -----------------------------------------------------------------

let browseAt: bigint | undefined;
let browseCtl: AbortController | undefined;

/**
 * browse loads a page of records. note, if given, is shown once the page
 * is; a new request clears it.
 */
async function browse(target: "first" | "last" | "prev" | "next" | bigint, note = "", ctl = newBrowse()): Promise<void> {
  const status = $("browse-status");
  const errEl = $("browse-error");
  const viewed = sel; // the selection this page is of
  let offset: bigint | undefined = typeof target === "bigint" ? target : undefined;
  try {
    const s = await client.getStats(source(viewed), { signal: ctl.signal });
    bounds = { lowest: s.lowestOffset, next: s.nextOffset };
    const { lowest, next } = bounds;
    const page = BigInt(pageSize);
    const at = browseAt ?? lowest;
    switch (target) {
      case "first":
        offset = lowest;
        break;
      case "last":
        offset = next - page > lowest ? next - page : lowest;
        break;
      case "prev":
        offset = at - page > lowest ? at - page : lowest;
        break;
      case "next":
        offset = at + page < next ? at + page : at;
        break;
    }
    const off = offset as bigint;
    if (next === lowest) {
      $("browse-list").replaceChildren(Object.assign(document.createElement("p"), { className: "empty-note", textContent: "The log is empty." }));
      status.textContent = "";
      browseAt = lowest;
      return;
    }
    if (off >= next || off < lowest) {
      say(errEl, describeError(new ConnectError("", Code.OutOfRange), context("consume", off)));
      return;
    }
    const want = Number(next - off < page ? next - off : page);
    const recs: TailRecord[] = [];
    status.textContent = "loading…";
    const timer = setTimeout(() => ctl.abort(), 15_000);
    try {
      for await (const res of client.consumeStream({ offset: off, maxBatch: want, ...source(viewed) }, { signal: ctl.signal })) {
        for (const r of res.records.length > 0 ? res.records : res.record ? [res.record] : []) recs.push(toTailRecord(r, keepBytes));
        if (recs.length >= want) break;
      }
    } finally {
      clearTimeout(timer);
    }
    if (ctl.signal.aborted && browseCtl === ctl) throw new ConnectError("browse timed out", Code.DeadlineExceeded);
    browseAt = off;
    $<HTMLInputElement>("browse-offset").value = off.toString();
    const list = $("browse-list");
    list.replaceChildren(
      ...recs.slice(0, want).map((rec) => {
        const row = createRow();
        renderRow(row, rec);
        row.addEventListener("click", () => void showDetail(rec));
        return row;
      }),
    );
    list.scrollTop = 0;
    const last = recs.length > 0 ? recs[Math.min(recs.length, want) - 1].offset : off;
    status.textContent = `offsets ${formatCount(off)}–${formatCount(last)} of ${formatCount(lowest)}–${formatCount(next - 1n)}`;
    say($("browse-note"), note);
  } catch (e) {
    if (browseCtl !== ctl) return; // superseded by a newer request
    status.textContent = "";
    say(errEl, explain(e, "consume", offset));
    if (missing(e)) void lost(viewed, e);
    if (isAuthError(e)) void refreshIdentity();
  }
}

/** newBrowse cancels the browse request in flight, clears its messages and starts another. */
function newBrowse(): AbortController {
  browseCtl?.abort();
  const ctl = new AbortController();
  browseCtl = ctl;
  say($("browse-error"), "");
  say($("browse-note"), "");
  return ctl;
}

/**
 * resetBrowse forgets the page shown: Browse shows the newest page of the
 * selected partition when it is next in view (now, if it is).
 */
function resetBrowse(): void {
  browseCtl?.abort();
  browseCtl = undefined;
  browseAt = undefined;
  $("browse-list").replaceChildren();
  $("browse-status").textContent = "";
  $<HTMLInputElement>("browse-offset").value = "";
  say($("browse-error"), "");
  say($("browse-note"), "");
  browsed = view === "browse";
  if (browsed) void browse("last");
}

/** jumpToTime loads the page that starts at the first record at or after ms. */
async function jumpToTime(ms: number): Promise<void> {
  const ctl = newBrowse();
  const when = formatTimeLocal(ms);
  const at = sel;
  try {
    const r = await client.getOffsetForTime({ time: timeFromMs(ms), ...source(at) }, { signal: ctl.signal, timeoutMs: 15_000 });
    if (browseCtl !== ctl) return;
    if (!r.time) {
      say($("browse-note"), `No record is at or after ${when}: every record in the log is older. The next one will get offset ${r.offset}.`);
      return;
    }
    await browse(r.offset, `Offset ${r.offset} is the first record at or after ${when} (appended ${formatTimeLocal(timeMs(r.time))}).`, ctl);
  } catch (e) {
    if (browseCtl !== ctl) return;
    say($("browse-error"), explain(e, "consume"));
    if (missing(e)) void lost(at, e);
    if (isAuthError(e)) void refreshIdentity();
  }
}

$("browse-time-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const ms = parseDateTimeLocal($<HTMLInputElement>("browse-time").value);
  if (ms instanceof Error) say($("browse-error"), ms.message);
  else void jumpToTime(ms);
});
for (const b of document.querySelectorAll<HTMLButtonElement>("#browse-time-form .ago")) {
  b.addEventListener("click", () => {
    const ms = Math.floor(Date.now() / 1000 - Number(b.dataset.ago)) * 1000; // whole seconds, as the input shows
    $<HTMLInputElement>("browse-time").value = toDateTimeLocal(ms);
    void jumpToTime(ms);
  });
}

$("browse-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const off = parseOffset($<HTMLInputElement>("browse-offset").value);
  if (off instanceof Error) say($("browse-error"), off.message);
  else void browse(off);
});
for (const [id, t] of [
  ["browse-first", "first"],
  ["browse-prev", "prev"],
  ["browse-next", "next"],
  ["browse-last", "last"],
] as const) {
  $(id).addEventListener("click", () => void browse(t));
}

// ---- tabs ---------------------------------------------------------------------

let browsed = false;
function selectTab(name: View): void {
  view = name;
  writeHash();
  for (const t of ["tail", "browse"]) {
    $(`tab-${t}`).setAttribute("aria-selected", String(t === name));
    $(`panel-${t}`).hidden = t !== name;
  }
  if (name === "browse" && !browsed) {
    browsed = true;
    void browse("last");
  }
  if (name === "tail") tailList.redraw();
}
$("tab-tail").addEventListener("click", () => selectTab("tail"));
$("tab-browse").addEventListener("click", () => selectTab("browse"));

// ---- produce ----------------------------------------------------------------

const produceForm = $<HTMLFormElement>("produce-form");
produceForm.addEventListener("submit", async (e) => {
  e.preventDefault();
  const input = $<HTMLTextAreaElement>("produce-value").value;
  const mode = (new FormData(produceForm).get("produce-mode") === "json" ? "json" : "text") as "json" | "text";
  const result = $("produce-result");
  const errEl = $("produce-error");
  say(result, "");
  say(errEl, "");
  say($("produce-trace"), "");
  $("produce-show").hidden = true;
  const value = encodeProduce(input, mode);
  const headers = parseHeaders($<HTMLTextAreaElement>("produce-headers").value);
  if (value instanceof Error || headers instanceof Error) {
    say(errEl, value instanceof Error ? value.message : (headers as Error).message);
    if (headers instanceof Error) $<HTMLDetailsElement>("produce-more").open = true;
    return;
  }
  const key = new TextEncoder().encode($<HTMLInputElement>("produce-key").value);
  const choice = $<HTMLSelectElement>("produce-partition").value;
  const at = sel;
  const partition = choice === "auto" || choice === "" ? undefined : Number(choice);
  const button = $<HTMLButtonElement>("produce-submit");
  button.disabled = true;
  // Each produce is a trace of its own, which the node (and the leader it
  // forwards to) continues when it traces.
  const trace = newTraceParent();
  try {
    const r = await client.produce(
      { record: { value, key, headers }, topic: source(at).topic, partition },
      { headers: { traceparent: trace.header } },
    );
    say(result, `Appended to ${at.topic} partition ${r.partition} at offset ${r.offset}.`);
    say($("produce-trace"), `Trace ${trace.traceId}`);
    if (at === sel && r.partition === sel.partition) {
      void fetchStats(performance.now()); // show the new bounds now, not at the next poll
    } else if (at === sel) {
      // It went to a partition the page is not showing: offer to show it.
      const show = $("produce-show");
      show.textContent = `Show partition ${r.partition}`;
      show.onclick = () => {
        show.hidden = true;
        choose(at.topic, r.partition);
      };
      show.hidden = false;
    }
  } catch (err) {
    if (isAuthError(err)) await refreshIdentity(); // the policy or certificate may have changed
    say(errEl, describeError(err, { ...context("produce", undefined, at), partition }));
    say($("produce-trace"), `Trace ${trace.traceId}`); // a failed call is traced too
    if (missing(err)) void lost(at, err);
  } finally {
    button.disabled = false;
  }
});
$("produce-value").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) produceForm.requestSubmit();
});

// ---- start --------------------------------------------------------------------

void refreshIdentity();
setInterval(() => void refreshIdentity(), identityEveryMs);
renderWhere();
every(topicsEveryMs, refreshTopics);
every(statsEveryMs, pollStats);
every(serversEveryMs, pollServers);
selectTab(view);
startTail();
