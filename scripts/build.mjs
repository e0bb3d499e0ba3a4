// Builds the host CLI into dist/ with esbuild. npm dependencies stay external
// on the host (they are installed beside the package); guest images bundle
// everything themselves (see rootfs/).
import { build } from "esbuild";
import { existsSync } from "node:fs";

const entries = { cohesix: "cli/index.ts" };
if (existsSync("workers/index.ts")) entries.workers = "workers/index.ts";

await build({
  entryPoints: entries,
  outdir: "dist",
  outExtension: { ".js": ".mjs" },
  bundle: true,
  platform: "node",
  target: "node20",
  format: "esm",
  packages: "external",
  sourcemap: true,
  logLevel: "warning",
});
