// End-to-end driver for the dashboard in headless Debian Chromium, run by
// web/e2e_test.go (build tag slow) against a real `proglog serve` over TLS.
//
// It talks to the Go test over a line protocol: it writes `E2E {json}` lines
// to stdout (what it did, what it needs) and reads one JSON line from stdin
// for every step that needs the Go side (producing with the Go client,
// restarting the server). Anything else on stdout is diagnostics.
//
// Environment: PROGLOG_URL (https://127.0.0.1:PORT), PROGLOG_CERTS (the
// quickstart's certs directory, with alice.pem/alice-key.pem added by the
// test), PROGLOG_ARTIFACTS (where screenshots go), CHROMIUM (executable),
// PROGLOG_E2E_MODE ("functional" or "bench").
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";
import { join } from "node:path";
import { writeFileSync } from "node:fs";

const url = process.env.PROGLOG_URL;
const certs = process.env.PROGLOG_CERTS;
const artifacts = process.env.PROGLOG_ARTIFACTS;
const mode = process.env.PROGLOG_E2E_MODE ?? "functional";
if (!url || !certs || !artifacts) throw new Error("PROGLOG_URL, PROGLOG_CERTS and PROGLOG_ARTIFACTS must be set");
const origin = new URL(url).origin;

const lines = createInterface({ input: process.stdin });
const stdin = lines[Symbol.asyncIterator]();

/** tell sends an event to the Go test. */
function tell(step, data = {}) {
  process.stdout.write(`E2E ${JSON.stringify({ step, ...data })}\n`);
}

/** ask sends a request to the Go test and waits for its one-line JSON answer. */
async function ask(step, data = {}) {
  tell(step, data);
  const { value, done } = await stdin.next();
  if (done) throw new Error(`the Go test closed stdin while we waited for ${step}`);
  const answer = JSON.parse(value);
  if (answer.error) throw new Error(`${step}: ${answer.error}`);
  return answer;
}

function check(cond, msg) {
  if (!cond) throw new Error(`check failed: ${msg}`);
}

// Test-side instrumentation, injected before the page's own script: CSP
// violations and animation-frame timing. The page itself has no test hooks.
const instrument = () => {
  window.__e2e = { csp: [], frames: [], recording: false };
  document.addEventListener("securitypolicyviolation", (e) => {
    window.__e2e.csp.push(`${e.violatedDirective} ${e.blockedURI}`);
  });
  let last = performance.now();
  const tick = (t) => {
    if (window.__e2e.recording) window.__e2e.frames.push(t - last);
    last = t;
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  // Playwright adds --headless, --no-sandbox (chromiumSandbox is off) and a
  // fresh --user-data-dir itself.
  args: [
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
  ],
});

/**
 * open makes a browser context, optionally with a client certificate, and
 * loads the dashboard. timezoneId sets the page's local time zone.
 */
async function open(name, certName, timezoneId) {
  const context = await browser.newContext({
    timezoneId,
    // The quickstart's CA is not in Chromium's trust store; the client
    // certificate proxy and the page still verify nothing else.
    ignoreHTTPSErrors: true,
    viewport: { width: 1280, height: 860 },
    clientCertificates: certName
      ? [{ origin, certPath: join(certs, `${certName}.pem`), keyPath: join(certs, `${certName}-key.pem`) }]
      : [],
  });
  await context.addInitScript(instrument);
  const page = await context.newPage();
  page.on("pageerror", (e) => console.log(`[${name}] page error: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error" && !/status of 40[13]/.test(m.text())) console.log(`[${name}] console: ${m.text()}`);
  });
  await page.goto(url);
  return { context, page };
}

async function shot(page, name) {
  const path = join(artifacts, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  tell("screenshot", { path });
}

async function noCSPViolations(page) {
  const v = await page.evaluate(() => window.__e2e.csp);
  check(v.length === 0, `CSP violations: ${v.join("; ")}`);
}

/** tailOffsets reads the offsets of the rows the virtual list shows, in order. */
async function tailOffsets(page) {
  return page.evaluate(() =>
    [...document.querySelectorAll("#tail-list .row:not([hidden])")]
      .map((r) => ({ y: new DOMMatrixReadOnly(getComputedStyle(r).transform).m42, off: Number(r.dataset.offset) }))
      .sort((a, b) => a.y - b.y)
      .map((r) => r.off),
  );
}

/**
 * sameTime reports whether two RFC 3339 UTC times are the same instant:
 * the page shows 0, 3, 6 or 9 fractional digits, the Go test sends 9.
 */
function sameTime(a, b) {
  const norm = (s) => {
    const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z$/.exec(s);
    return m ? `${m[1]}.${(m[2] ?? "").padEnd(9, "0")}Z` : `not RFC 3339: ${s}`;
  };
  return norm(a) === norm(b);
}

async function waitText(page, selector, re, timeout = 20_000) {
  const loc = page.locator(selector);
  await loc.filter({ hasText: re }).first().waitFor({ timeout });
  return (await loc.first().innerText()).trim();
}

/** hash reads the page's URL hash, where it keeps the view, topic and partition. */
function hash(page) {
  return page.evaluate(() => location.hash);
}

/** selectValue reads a select's value. */
function selectValue(page, selector) {
  return page.locator(selector).evaluate((el) => el.value);
}

async function functional() {
  // 1. Root: the tail shows records a Go client produces, live. The page's
  // local time is St. John's (UTC-03:30 or -02:30), never UTC by accident.
  const root = await open("root", "root", "America/St_Johns");
  let p = root.page;
  await waitText(p, "#identity-subject", /^root$/);
  await waitText(p, "#identity-actions", /produce/);
  await waitText(p, "#tail-status", /live|waiting for records/);
  const produced = await ask("produce-go", { count: 5 });
  for (const v of produced.values) await waitText(p, "#tail-list", new RegExp(v));
  await waitText(p, "#tail-status", /^live$/);
  await waitText(p, "#st-next", new RegExp(`^${produced.next}$`), 10_000);
  await shot(p, "1-tail-live-root");

  // 1a. Binary values show as hex; a value larger than the tail keeps is
  // fetched whole for the detail view.
  const special = await ask("produce-special");
  const binRow = p.locator(`#tail-list .row[data-offset="${special.binary}"]`);
  await binRow.locator(".v-hex").filter({ hasText: /^00 01 02 ff fe$/ }).waitFor({ timeout: 20_000 });
  await binRow.click();
  await waitText(p, "#detail-meta", /^5 B · hex$/);
  await waitText(p, "#detail-value", /^00000000 {2}00 01 02 ff fe/);
  await p.locator(`#tail-list .row[data-offset="${special.large}"]`).click();
  await waitText(p, "#detail-meta", /^195 KiB · text$/);
  const detail = await p.locator("#detail-value").innerText();
  check(detail.length === 200_000 && detail.endsWith("END"), `large detail has ${detail.length} characters`);
  await p.click("#detail-close");

  // 1b. The gRPC-Web transport shows the same records.
  const gw = await root.context.newPage();
  await gw.goto(`${url}?transport=grpc-web`);
  await waitText(gw, "#transport", /gRPC-Web/);
  for (const v of produced.values) await waitText(gw, "#tail-list", new RegExp(v));
  await noCSPViolations(gw);
  await gw.close();

  // 2. The page produces a JSON record; the Go client reads it back.
  const nonce = `page-${Date.now()}`;
  await p.fill("#produce-value", JSON.stringify({ from: "browser", nonce }));
  await p.check('input[name="produce-mode"][value="json"]');
  const produceRequest = p.waitForRequest((r) => r.url().endsWith("/log.v1.LogService/Produce"));
  await p.click("#produce-submit");
  const result = await waitText(p, "#produce-result", /^Appended to default partition 0 at offset \d+\.$/);
  const offset = Number(/offset (\d+)/.exec(result)[1]);
  await waitText(p, "#tail-list", new RegExp(nonce));
  await shot(p, "2-produce-from-page");
  await ask("read-back", { offset, value: JSON.stringify({ from: "browser", nonce }) });

  // 2b. The produce sent a traceparent of a new trace, the page shows its
  // trace id, and the node's spans of that trace reach its OTLP receiver.
  const traceparent = (await (await produceRequest).allHeaders())["traceparent"] ?? "";
  const tp = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(traceparent);
  check(tp, `the produce's traceparent header is ${JSON.stringify(traceparent)}`);
  await waitText(p, "#produce-trace", new RegExp(`^Trace ${tp[1]}$`));
  await ask("trace", { traceId: tp[1], spanId: tp[2] });

  // 3. Invalid JSON never reaches the server.
  await p.fill("#produce-value", "{not json");
  await p.click("#produce-submit");
  await waitText(p, "#produce-error", /not valid JSON/);

  // 4. Browse: pages, the detail view with pretty JSON, and an offset past the end.
  await p.click("#tab-browse");
  await waitText(p, "#browse-status", /^offsets /);
  await p.locator(`#browse-list .row[data-offset="${offset}"]`).click();
  await waitText(p, "#detail-value", /"nonce": "page-/);
  await waitText(p, "#detail-meta", /json/);
  await shot(p, "3-browse-detail");
  await p.fill("#browse-offset", "999999");
  await p.click('#browse-form button[type="submit"]');
  await waitText(p, "#browse-error", new RegExp(`^Offset 999999 is past the end \\(next is ${offset + 1}\\)\\.$`));
  await shot(p, "4-browse-out-of-range");
  await p.click("#browse-first");
  await waitText(p, "#browse-status", /^offsets 0–/);
  const browsed = await p.locator("#browse-list .row").count();
  check(browsed === offset + 1, `browse shows ${browsed} rows, want ${offset + 1}`);

  // 4b. Keys, headers and times (issue #11). The tail and Browse show a
  // record's key and local time (the UTC time in its tooltip); the detail
  // view shows its headers in order, repeats kept, non-text ones as hex.
  await p.click("#tab-tail");
  const keyed = await ask("produce-keyed");
  const timeRe = /^(\d\d:\d\d:\d\d\.\d{3}|\d\d-\d\d \d\d:\d\d:\d\d)$/; // today, or just after midnight
  const tailRow = p.locator(`#tail-list .row[data-offset="${keyed.keyed}"]`);
  await tailRow.locator(".key").filter({ hasText: /^user-42$/ }).waitFor({ timeout: 20_000 });
  check(timeRe.test(await tailRow.locator(".time").innerText()), "the tail row shows no time");
  await p.click("#tab-browse");
  await p.click("#browse-last");
  const row = p.locator(`#browse-list .row[data-offset="${keyed.keyed}"]`);
  await row.locator(".key").filter({ hasText: /^user-42$/ }).waitFor({ timeout: 20_000 });
  const shown = await row.locator(".time").innerText();
  check(timeRe.test(shown), `browse shows time ${JSON.stringify(shown)}`);
  const tip = await row.locator(".time").getAttribute("title");
  check(sameTime(tip, keyed.keyedTime), `the time's tooltip is ${tip}, the record's time ${keyed.keyedTime}`);
  const local = await p.evaluate((ms) => {
    const d = new Date(ms);
    return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, "0")).join(":");
  }, keyed.keyedMs);
  check(shown.includes(local), `browse shows ${shown}, want local time ${local}`);
  await row.click();
  await waitText(p, "#detail-key", /^user-42$/);
  const headers = await p.locator("#detail-headers tr").evaluateAll((trs) =>
    trs.map((tr) => [...tr.children].map((td) => `${td.textContent}${td.className === "f-hex" ? " (hex)" : ""}`)),
  );
  check(
    JSON.stringify(headers) === JSON.stringify([["trace-id", "abc"], ["bin", "00 01 ff (hex)"], ["trace-id", "def"]]),
    `detail headers ${JSON.stringify(headers)}`,
  );
  const detailTime = await p.locator("#detail-time").innerText();
  check(sameTime(detailTime, keyed.keyedTime), `detail time ${detailTime}, want ${keyed.keyedTime}`);
  await waitText(p, "#detail-time-local", new RegExp(`^\\(\\d{4}-\\d\\d-\\d\\d ${local}(\\.\\d{3})? UTC-0[23]:30\\)$`));
  await waitText(p, "#detail-value", /"event": "signup"/);
  await shot(p, "4b-browse-key-headers-time");

  // 4c. The form produces a record with a key and headers; the Go client
  // reads them back.
  await p.click("#produce-more summary");
  await p.fill("#produce-value", "with headers");
  await p.check('input[name="produce-mode"][value="text"]');
  await p.fill("#produce-key", "page-key");
  await p.fill("#produce-headers", "source: dashboard\nsource: again\n\nempty:");
  await p.click("#produce-submit");
  const withHeaders = Number(/offset (\d+)/.exec(await waitText(p, "#produce-result", /^Appended to default partition 0 at offset \d+\.$/))[1]);
  await ask("read-back", {
    offset: withHeaders,
    value: "with headers",
    key: "page-key",
    headers: [["source", "dashboard"], ["source", "again"], ["empty", ""]],
  });
  await p.fill("#produce-headers", "no colon here");
  await p.click("#produce-submit");
  await waitText(p, "#produce-error", /^Header line 1: write a header as "key: value"\.$/);
  await p.fill("#produce-key", "");
  await p.fill("#produce-headers", "");

  // 4d. Jump to a time: the next whole second after the keyed record is
  // before the plain one, so the page starts there.
  const between = Math.floor(keyed.keyedMs / 1000) * 1000 + 1000;
  check(between <= keyed.plainMs, `no whole second between ${keyed.keyedTime} and ${keyed.plainTime}`);
  const localInput = (ms) =>
    p.evaluate((ms) => {
      const d = new Date(ms);
      const z = (n, w = 2) => String(n).padStart(w, "0");
      return `${z(d.getFullYear(), 4)}-${z(d.getMonth() + 1)}-${z(d.getDate())}T${z(d.getHours())}:${z(d.getMinutes())}:${z(d.getSeconds())}`;
    }, ms);
  await p.fill("#browse-time", await localInput(between));
  await p.click('#browse-time-form button[type="submit"]');
  await waitText(p, "#browse-note", new RegExp(`^Offset ${keyed.plain} is the first record at or after `));
  const first = async () => Number(await p.locator("#browse-list .row").first().getAttribute("data-offset"));
  check((await first()) === keyed.plain, `browse starts at ${await first()}, want ${keyed.plain}`);
  await shot(p, "4d-jump-to-time");
  // A time after every record says so.
  await p.fill("#browse-time", await localInput(Date.now() + 86_400_000));
  await p.click('#browse-time-form button[type="submit"]');
  await waitText(p, "#browse-note", /^No record is at or after .*: every record in the log is older\. The next one will get offset \d+\.$/);
  await shot(p, "4e-jump-past-the-end");
  // "1 h ago" is before every record of this test: the page starts at the oldest.
  await p.click('#browse-time-form button[data-ago="3600"]');
  await waitText(p, "#browse-note", /^Offset 0 is the first record at or after /);
  check((await first()) === 0, `"1 h ago" starts at ${await first()}, want 0`);
  await p.click("#detail-close");

  // 5. The tail survives a server restart and resumes without gaps or repeats.
  await p.click("#tab-tail");
  await ask("restart-server");
  const after = await ask("produce-go", { count: 3 });
  for (const v of after.values) await waitText(p, "#tail-list", new RegExp(v), 30_000);
  const offs = await tailOffsets(p);
  for (let i = 1; i < offs.length; i++) check(offs[i] === offs[i - 1] + 1, `tail rows not consecutive: ${offs.join(",")}`);
  check(offs.at(-1) === after.next - 1, `last tail row ${offs.at(-1)}, want ${after.next - 1}`);
  await waitText(p, "#tail-status", /^live$/);
  await shot(p, "5-tail-after-restart");

  // 6. Pause stops the stream; resume catches up.
  await p.click("#tail-pause");
  await waitText(p, "#tail-status", /^paused/);
  const during = await ask("produce-go", { count: 2 });
  await p.waitForTimeout(300);
  check(!(await p.locator("#tail-list").innerText()).includes(during.values[0]), "a paused tail showed a new record");
  await p.click("#tail-pause");
  for (const v of during.values) await waitText(p, "#tail-list", new RegExp(v));

  // 6b. Scrolling up stops following; "Newest" goes back to the live end.
  const many = await ask("produce-go", { count: 200 });
  await waitText(p, "#tail-list", new RegExp(many.values[199]));
  await p.focus("#tail-list");
  await p.keyboard.press("Home");
  await p.locator("#tail-follow").waitFor({ state: "visible", timeout: 5_000 });
  check((await tailOffsets(p))[0] === 0, "Home did not scroll to the oldest row");
  const more = await ask("produce-go", { count: 1 });
  await p.click("#tail-follow");
  await p.locator("#tail-follow").waitFor({ state: "hidden", timeout: 5_000 });
  await waitText(p, "#tail-list", new RegExp(more.values[0]));
  await topicsAndPartitions(p);
  await noCSPViolations(p);
  await root.context.close();

  // 7. No certificate: the anonymous view, and producing explains why not.
  const anon = await open("anonymous");
  p = anon.page;
  await waitText(p, "#identity-subject", /^anonymous$/);
  await waitText(p, "#identity-hint", /import root\.p12/);
  await waitText(p, "#tail-error", /Anonymous visitors may not consume/);
  await p.fill("#produce-value", "anonymous write");
  await p.click("#produce-submit");
  await waitText(p, "#produce-error", /^You are not signed in with a client certificate; import root\.p12/);
  await shot(p, "6-anonymous");
  await noCSPViolations(p);
  await anon.context.close();

  // 8. A certificate the policy lets consume but not produce.
  const alice = await open("alice", "alice");
  p = alice.page;
  await waitText(p, "#identity-subject", /^alice$/);
  await waitText(p, "#identity-actions", /^may consume$/);
  await waitText(p, "#tail-list", new RegExp(more.values[0]));
  await p.fill("#produce-value", "alice write");
  await p.click("#produce-submit");
  await waitText(p, "#produce-error", /^This certificate \(alice\) may consume but not produce\.$/);
  await shot(p, "7-alice-may-not-produce");
  await noCSPViolations(p);
  await alice.context.close();

  // 9. A tail that falls behind retention skips ahead and says so.
  const ret = await open("retention", "root");
  p = ret.page;
  await waitText(p, "#tail-status", /^live$/);
  await p.click("#tail-pause");
  const paused = await waitText(p, "#tail-status", /^paused before offset \d+$/);
  const pausedAt = Number(/(\d+)$/.exec(paused)[1]);
  const r = await ask("retention", { count: 3000 });
  check(r.lowest > pausedAt, `retention kept offset ${pausedAt} (lowest ${r.lowest}); the test needs it gone`);
  await p.click("#tail-pause");
  await waitText(p, "#tail-note", new RegExp(`^Records ${pausedAt}–\\d+ were removed by retention before the tail read them; continuing at \\d+\\.$`), 30_000);
  await waitText(p, "#tail-counts", new RegExp(`–${r.next - 1}\\)$`), 30_000);
  // The counts update before the list renders its rows (the next frame):
  // give the rows a moment to catch up.
  let offs9 = await tailOffsets(p);
  for (let i = 0; i < 100 && offs9.at(-1) !== r.next - 1; i++) {
    await p.waitForTimeout(100);
    offs9 = await tailOffsets(p);
  }
  check(offs9.at(-1) === r.next - 1, `last tail row ${offs9.at(-1)}, want ${r.next - 1}`);
  await waitText(p, "#st-lowest", new RegExp(`^${r.lowest.toLocaleString("en-US")}$`), 10_000);
  await waitText(p, "#st-next", new RegExp(`^${r.next.toLocaleString("en-US")}$`), 10_000);
  check(await p.locator("#stats-error").isHidden(), "the overview still shows an error after the restart");
  await shot(p, "8-retention-skip");
  await noCSPViolations(p);
  await ret.context.close();
}

/**
 * topicsAndPartitions: a topic with 3 partitions, created by the Go client,
 * appears in the selector; the tail, Browse, Produce and the overview
 * follow the selected partition, the URL keeps it across a reload, the
 * members list shows each node's partition leaders, the Topics panel
 * describes the topic, and when the topic is deleted the page says so and
 * goes back to "default", as it goes back to partition 0 from one the
 * topic does not have. It leaves the page on the default topic's tail.
 */
async function topicsAndPartitions(p) {
  const before = await ask("servers");
  // 10a. The node's members entry counts the partitions it leads.
  for (const s of before.servers) {
    await waitText(p, `#members li[data-id="${s.id}"]`, new RegExp(`leads ${s.partitionLeaders} partitions?`), 15_000);
  }
  const created = await ask("create-topic", { name: "orders", partitions: 3 });
  check(created.partitions === 3 && created.replicationFactor === 1, `created ${JSON.stringify(created)}`);
  // The selector finds it on its own: ListTopics every few seconds.
  await p.locator('#topic-select option[value="orders"]').waitFor({ state: "attached", timeout: 15_000 });
  await p.selectOption("#topic-select", "orders");
  check((await hash(p)) === "#tail&topic=orders", `hash ${await hash(p)}`);
  const parts = await p.locator("#partition-select option").evaluateAll((os) => os.map((o) => o.value));
  check(JSON.stringify(parts) === '["0","1","2"]', `partition options ${JSON.stringify(parts)}`);
  const produceParts = await p.locator("#produce-partition option").evaluateAll((os) => os.map((o) => o.value));
  check(JSON.stringify(produceParts) === '["auto","0","1","2"]', `produce partition options ${JSON.stringify(produceParts)}`);
  await waitText(p, "#tail-counts", / · showing 0$/); // the old topic's records are gone
  await p.selectOption("#partition-select", "2");
  check((await hash(p)) === "#tail&topic=orders&partition=2", `hash ${await hash(p)}`);
  check((await selectValue(p, "#produce-partition")) === "2", "the produce partition does not follow the selection");
  await waitText(p, "#tail-status", /^(live|waiting for records…)$/);
  await waitText(p, "#st-where", /^orders · partition 2$/);
  await waitText(p, "#st-next", /^0$/);

  // 10b. The form produces to a partition it names; the tail of that
  // partition shows the record, and the Go client reads it there.
  await p.fill("#produce-value", "to-partition-2");
  await p.check('input[name="produce-mode"][value="text"]');
  await p.click("#produce-submit");
  await waitText(p, "#produce-result", /^Appended to orders partition 2 at offset 0\.$/);
  await ask("read-back", { topic: "orders", partition: 2, offset: 0, value: "to-partition-2" });
  await waitText(p, "#tail-list", /to-partition-2/);
  // A record for partition 1 does not show; a later one for partition 2 does.
  const other = await ask("produce-go", { count: 1, topic: "orders", partition: 1 });
  const live = await ask("produce-go", { count: 1, topic: "orders", partition: 2 });
  await waitText(p, "#tail-list", new RegExp(live.values[0]));
  check(JSON.stringify(await tailOffsets(p)) === "[0,1]", `partition 2's tail shows ${JSON.stringify(await tailOffsets(p))}`);
  check(!(await p.locator("#tail-list").innerText()).includes(other.values[0]), "partition 2's tail shows partition 1's record");
  await waitText(p, "#st-next", /^2$/, 10_000);
  await waitText(p, "#produce-where", /^to orders$/);
  // "auto" lets the server choose; the answer names the partition.
  await p.selectOption("#produce-partition", "auto");
  await p.fill("#produce-value", "auto-partition");
  await p.click("#produce-submit");
  const auto = /partition (\d) at offset (\d+)/.exec(await waitText(p, "#produce-result", /^Appended to orders partition [0-2] at offset \d+\.$/));
  await ask("read-back", { topic: "orders", partition: Number(auto[1]), offset: Number(auto[2]), value: "auto-partition" });
  await shot(p, "10a-topic-partition-tail");

  // 10c. Browse shows partition 2; a reload keeps the selection.
  await p.click("#tab-browse");
  check((await hash(p)) === "#browse&topic=orders&partition=2", `hash ${await hash(p)}`);
  await waitText(p, "#browse-status", /^offsets 0–[12] of 0–[12]$/);
  await waitText(p, "#browse-list", /to-partition-2/);
  check(!(await p.locator("#browse-list").innerText()).includes(other.values[0]), "Browse of partition 2 shows partition 1's record");
  await p.reload();
  await waitText(p, "#browse-list", /to-partition-2/);
  check((await selectValue(p, "#topic-select")) === "orders", "the reload lost the topic");
  check((await selectValue(p, "#partition-select")) === "2", "the reload lost the partition");
  await waitText(p, "#st-where", /^orders · partition 2$/);
  // Partition 1 holds the Go client's record and not the page's.
  await p.selectOption("#partition-select", "1");
  await waitText(p, "#browse-list", new RegExp(other.values[0]));
  check(!(await p.locator("#browse-list").innerText()).includes("to-partition-2"), "Browse of partition 1 shows partition 2's record");
  check((await hash(p)) === "#browse&topic=orders&partition=1", `hash ${await hash(p)}`);

  // 10d. The members list counts the new partitions' leaders; the Topics
  // panel lists the topic and describes its partitions.
  const after = await ask("servers");
  const leads = after.servers.reduce((n, s) => n + s.partitionLeaders, 0) - before.servers.reduce((n, s) => n + s.partitionLeaders, 0);
  check(leads === 3, `the cluster leads ${leads} more partitions after creating 3`);
  for (const s of after.servers) {
    await waitText(p, `#members li[data-id="${s.id}"]`, new RegExp(`leads ${s.partitionLeaders} partitions?`), 15_000);
  }
  const row = p.locator('#topics-body tr[data-topic="orders"]');
  await row.waitFor({ timeout: 15_000 });
  const cells = await row.locator("td").allInnerTexts();
  check(JSON.stringify(cells) === '["orders","3","1","forever"]', `topics row ${JSON.stringify(cells)}`);
  check(await row.evaluate((tr) => tr.classList.contains("selected")), "the selected topic is not marked");
  await waitText(p, "#partitions-title", /^Partitions of orders$/);
  const p2 = p.locator('#partitions-body tr[data-partition="2"]');
  // Offsets come from DescribeTopic, asked every few seconds.
  await p2.filter({ hasText: /✓/ }).waitFor({ timeout: 15_000 });
  const leader = after.servers[0].id;
  for (let i = 0; ; i++) {
    const c = await p2.locator("td").allInnerTexts();
    if (c[1] === leader && c[4] === "2") break;
    check(i < 150, `partition 2's row ${JSON.stringify(c)}, want leader ${leader} and next offset 2`);
    await p.waitForTimeout(100);
  }
  await p.locator('#partitions-body tr[data-partition="0"] button').click();
  await waitText(p, "#st-where", /^orders · partition 0$/);
  check((await selectValue(p, "#partition-select")) === "0", "the Topics panel did not select partition 0");
  await shot(p, "10b-topic-browse-and-panel");

  // 10e. A deleted topic: the page says so and shows "default" again.
  await ask("delete-topic", { name: "orders" });
  await waitText(p, "#where-note", /^Topic "orders" does not exist \(it may have been deleted\)\. Showing "default"\.$/, 20_000);
  check((await selectValue(p, "#topic-select")) === "default", "the page did not fall back to default");
  check((await hash(p)) === "#browse", `hash ${await hash(p)}`);
  await waitText(p, "#browse-status", /^offsets /);
  await shot(p, "10c-topic-deleted");
  await p.click("#tab-tail");
  await waitText(p, "#tail-status", /^live$/);
  // 10f. A partition the topic does not have (a hand-edited URL).
  await p.evaluate(() => (location.hash = "#tail&partition=5"));
  await waitText(p, "#where-note", /^Topic "default" has no partition 5: it has 1 partition \(0\)\. Showing partition 0\.$/, 20_000);
  check((await hash(p)) === "#tail", `hash ${await hash(p)}`);
  await waitText(p, "#tail-status", /^live$/);
}

/** heap forces a garbage collection and reads the page's JS heap (bytes). */
async function heap(page) {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("HeapProfiler.collectGarbage");
  const { usedSize } = await cdp.send("Runtime.getHeapUsage");
  await cdp.detach();
  return usedSize;
}

function frameStats(frames) {
  const sorted = [...frames].sort((a, b) => a - b);
  const pct = (q) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] : 0);
  return {
    frames: frames.length,
    p50_ms: +pct(0.5).toFixed(1),
    p99_ms: +pct(0.99).toFixed(1),
    max_ms: +(sorted.at(-1) ?? 0).toFixed(1),
    // A frame that took longer than two vsync intervals dropped one.
    dropped: frames.filter((f) => f > 2 * (1000 / 60)).length,
  };
}

async function bench() {
  const { page } = await open("bench", "root");
  await waitText(page, "#identity-subject", /^root$/);
  await waitText(page, "#tail-status", /live|waiting for records/);
  const results = { live: [], catchup: undefined };
  const received = () =>
    page.evaluate(() => Number(document.getElementById("tail-counts").textContent.split(" ")[0].replaceAll(",", "")));

  // Live: the Go client produces at a fixed rate while the page follows.
  for (const rate of (process.env.PROGLOG_BENCH_RATES ?? "1000,10000,20000,40000").split(",").map(Number)) {
    const before = await received();
    await page.evaluate(() => {
      window.__e2e.frames = [];
      window.__e2e.recording = true;
    });
    const t0 = Date.now();
    const r = await ask("produce-rate", { rate, seconds: 5 });
    // Wait for the page to show every record produced.
    const deadline = Date.now() + 60_000;
    while ((await received()) - before < r.count && Date.now() < deadline) await page.waitForTimeout(50);
    const elapsed = (Date.now() - t0) / 1000;
    const frames = await page.evaluate(() => {
      window.__e2e.recording = false;
      return window.__e2e.frames;
    });
    const got = (await received()) - before;
    results.live.push({ target_rate: rate, produced: r.count, produce_rate: Math.round(r.count / r.seconds), shown: got, seconds_until_all_shown: +elapsed.toFixed(2), ...frameStats(frames) });
    tell("bench-live", results.live.at(-1));
  }

  // Catch-up: stream a million records from offset 0 as fast as they come.
  // The tail is paused while they are produced so only the catch-up counts.
  const total = Number(process.env.PROGLOG_BENCH_RECORDS ?? 1_000_000);
  await page.click("#tail-pause");
  await waitText(page, "#tail-status", /^paused/);
  const filled = await ask("produce-bulk", { count: total });
  await page.evaluate(() => {
    window.__e2e.frames = [];
    window.__e2e.recording = true;
  });
  const heapBefore = await heap(page);
  await page.selectOption("#tail-from", "offset");
  await page.fill("#tail-offset", String(filled.first));
  const before = await received();
  const t0 = Date.now();
  await page.click("#tail-start");
  const deadline = Date.now() + 600_000;
  while ((await received()) - before < filled.count) {
    check(Date.now() < deadline, `the tail showed ${(await received()) - before} of ${filled.count} records in 600s`);
    await page.waitForTimeout(100);
  }
  const seconds = (Date.now() - t0) / 1000;
  const frames = await page.evaluate(() => {
    window.__e2e.recording = false;
    return window.__e2e.frames;
  });
  const heapAfter = await heap(page);
  await shot(page, "bench-after-catchup");
  results.catchup = {
    records: filled.count,
    seconds: +seconds.toFixed(2),
    records_per_second: Math.round(filled.count / seconds),
    heap_before_mb: +(heapBefore / 2 ** 20).toFixed(1),
    heap_after_mb: +(heapAfter / 2 ** 20).toFixed(1),
    ...frameStats(frames),
  };
  tell("bench-catchup", results.catchup);
  writeFileSync(join(artifacts, "bench.json"), JSON.stringify(results, null, 2) + "\n");
}

try {
  if (mode === "bench") await bench();
  else await functional();
  tell("done");
} catch (e) {
  tell("failed", { error: String(e?.stack ?? e) });
  process.exitCode = 1;
} finally {
  lines.close(); // an open stdin would keep node running
  await browser.close();
}
