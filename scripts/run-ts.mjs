// Runs a TypeScript entry (bench, fuzz campaign) by bundling it with esbuild
// into a temporary file first, so no TypeScript loader is needed at run time.
import { build } from "esbuild";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

const [entry, ...rest] = process.argv.slice(2);
if (!entry) {
  console.error("usage: node scripts/run-ts.mjs FILE.ts [ARGS...]");
  process.exit(2);
}
// The bundle lives under the project's node_modules so that its bare imports
// (packages stay external) resolve from the project, as Node's ESM resolver
// ignores NODE_PATH and would look beside a temp folder instead.
const cache = resolve("node_modules", ".cache");
mkdirSync(cache, { recursive: true });
const dir = mkdtempSync(join(cache, "cohesix-run-"));
const out = join(dir, "main.mjs");
await build({
  entryPoints: [resolve(entry)],
  outfile: out,
  bundle: true,
  platform: "node",
  target: "node20",
  format: "esm",
  packages: "external",
  sourcemap: "inline",
  logLevel: "warning",
});
process.argv = [process.argv[0], resolve(entry), ...rest];
process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
await import(pathToFileURL(out).href);
