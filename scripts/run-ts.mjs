// Runs a TypeScript entry (bench, fuzz campaign) by bundling it with esbuild
// into a temporary file first, so no TypeScript loader is needed at run time.
import { build } from "esbuild";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

const [entry, ...rest] = process.argv.slice(2);
if (!entry) {
  console.error("usage: node scripts/run-ts.mjs FILE.ts [ARGS...]");
  process.exit(2);
}
const dir = mkdtempSync(join(tmpdir(), "cohesix-run-"));
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
  // Resolve bare imports from the project, not from the temp folder.
  nodePaths: [resolve("node_modules")],
});
process.argv = [process.argv[0], resolve(entry), ...rest];
process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
await import(pathToFileURL(out).href);
