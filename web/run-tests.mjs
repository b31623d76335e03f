// Runs the unit tests: esbuild compiles each test/*.test.ts (with the
// modules it imports) to a temporary directory, then node's test runner
// runs them. Usage: node run-tests.mjs [node --test flags...]
import { build } from "esbuild";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const here = new URL(".", import.meta.url).pathname;
const tests = readdirSync(join(here, "test"))
  .filter((f) => f.endsWith(".test.ts"))
  .sort()
  .map((f) => join(here, "test", f));
if (tests.length === 0) {
  console.error("no tests found in web/test");
  process.exit(1);
}
const out = mkdtempSync(join(tmpdir(), "proglog-web-test-"));
try {
  await build({
    entryPoints: tests,
    outdir: out,
    outExtension: { ".js": ".mjs" },
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    sourcemap: "inline",
    packages: "bundle",
    logLevel: "warning",
  });
  const files = readdirSync(out)
    .filter((f) => f.endsWith(".test.mjs"))
    .map((f) => join(out, f));
  const r = spawnSync(process.execPath, ["--enable-source-maps", "--test", ...process.argv.slice(2), ...files], {
    stdio: "inherit",
  });
  process.exitCode = r.status ?? 1;
} finally {
  rmSync(out, { recursive: true, force: true });
}
