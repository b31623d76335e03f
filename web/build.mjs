// Builds the dashboard into dist/: content-hashed assets under dist/assets
// and an index.html that references them. The output depends only on the
// sources and the pinned esbuild, so `make generate` in CI reproduces the
// committed bundle byte for byte. Usage: node build.mjs
import { build } from "esbuild";
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { basename, join, relative } from "node:path";

const here = new URL(".", import.meta.url).pathname;
const dist = join(here, "dist");

rmSync(dist, { recursive: true, force: true });
mkdirSync(dist, { recursive: true });

const result = await build({
  absWorkingDir: here,
  entryPoints: ["src/main.ts"],
  outdir: dist,
  entryNames: "assets/[name]-[hash]",
  assetNames: "assets/[name]-[hash]",
  bundle: true,
  format: "esm",
  platform: "browser",
  target: ["es2022", "chrome100", "firefox100", "safari15.4"],
  minify: true,
  sourcemap: false,
  charset: "utf8",
  metafile: true,
  logLevel: "warning",
});

const outputs = Object.entries(result.metafile.outputs);
const find = (pred, what) => {
  const hit = outputs.find(([path, meta]) => pred(path, meta));
  if (!hit) throw new Error(`build produced no ${what}`);
  return relative(dist, join(here, hit[0]));
};
const js = find((p, m) => m.entryPoint === "src/main.ts", "script");
const css = find((p) => p.endsWith(".css"), "stylesheet");

// Static files are copied under a name with their content's hash, like esbuild's.
const copyHashed = (src) => {
  const data = readFileSync(join(here, src));
  const hash = createHash("sha256").update(data).digest("hex").slice(0, 8).toUpperCase();
  const name = `assets/${basename(src).replace(/(\.[^.]+)$/, `-${hash}$1`)}`;
  writeFileSync(join(dist, name), data);
  outputs.push([relative(here, join(dist, name)), { bytes: data.length }]);
  return name;
};
const icon = copyHashed("src/icon.svg");

const html = readFileSync(join(here, "src/index.html"), "utf8")
  .replaceAll("{{script}}", `/${js}`)
  .replaceAll("{{style}}", `/${css}`)
  .replaceAll("{{icon}}", `/${icon}`);
if (html.includes("{{")) throw new Error("index.html has an unknown placeholder");
writeFileSync(join(dist, "index.html"), html);

for (const [path, meta] of outputs) console.log(`${basename(path).padEnd(28)} ${String(meta.bytes).padStart(8)} bytes`);
