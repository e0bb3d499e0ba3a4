// Builds the host CLI into dist/ with esbuild, and each worker program
// (workers/<name>/main.ts) into dist/workers/<name>.mjs, which the root task
// runs as its own process. npm dependencies stay external on the host (they
// are installed beside the package); guest images bundle everything
// themselves (see rootfs/).
//
//   node scripts/build.mjs            CLI, worker API and worker programs
//   node scripts/build.mjs --workers  worker programs only
//   node scripts/build.mjs --types    also the worker API's type declarations
//                                     (dist/types, for `cohesix/worker`; run by prepack)
import { build } from "esbuild";
import { execFileSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

// Paths below are relative to the package root, wherever this runs from.
const root = fileURLToPath(new URL("..", import.meta.url));
process.chdir(root);

const workersOnly = process.argv.includes("--workers");

const entries = {};
if (!workersOnly && existsSync("workers/index.ts")) entries.workers = "./workers/index.ts";
if (existsSync("workers")) {
  for (const d of readdirSync("workers", { withFileTypes: true })) {
    const main = join("workers", d.name, "main.ts");
    if (d.isDirectory() && existsSync(main)) entries[`workers/${d.name}`] = `./${main}`;
  }
}

// The CLI: its entry holds only the verb table; each verb's implementation
// is a dynamic import, which esbuild splits into chunks (dist/cli/), so
// `cohesix ls` loads the 9P client and never esbuild, execa or serialport.
// dist/cli-meta.json records what each chunk imports (a test reads it).
if (!workersOnly) {
  rmSync("dist/cli", { recursive: true, force: true });
  const cli = await build({
    absWorkingDir: root,
    entryPoints: { cohesix: "./cli/index.ts" },
    outdir: "dist",
    outExtension: { ".js": ".mjs" },
    chunkNames: "cli/[name]-[hash]",
    splitting: true,
    bundle: true,
    platform: "node",
    target: "node20",
    format: "esm",
    packages: "external",
    sourcemap: true,
    metafile: true,
    logLevel: "warning",
  });
  writeFileSync("dist/cli-meta.json", JSON.stringify(cli.metafile));
}

await build({
  absWorkingDir: root,
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

// Worker assets (workers/<name>/*.png, e.g. the inference sample) go beside
// the bundle, in dist/workers/<name>/.
if (existsSync("workers")) {
  for (const d of readdirSync("workers", { withFileTypes: true })) {
    if (!d.isDirectory()) continue;
    const assets = readdirSync(join("workers", d.name)).filter((f) => f.endsWith(".png"));
    if (assets.length === 0) continue;
    mkdirSync(join("dist", "workers", d.name), { recursive: true });
    for (const f of assets) copyFileSync(join("workers", d.name, f), join("dist", "workers", d.name, f));
  }
}

// Type declarations of the worker API, which users' TypeScript checks
// against (`import { runWorker } from "cohesix/worker"`). Sources import
// with `.ts` extensions; the declarations must say `.js`, which TypeScript
// maps to the `.d.ts` beside them.
if (process.argv.includes("--types")) {
  rmSync("dist/types", { recursive: true, force: true });
  execFileSync(process.execPath, [join("node_modules", "typescript", "bin", "tsc"), "-p", "tsconfig.types.json"], { stdio: "inherit" });
  const rewrite = (dir) => {
    for (const d of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, d.name);
      if (d.isDirectory()) rewrite(p);
      else if (d.name.endsWith(".d.ts")) {
        const text = readFileSync(p, "utf8");
        writeFileSync(p, text.replace(/(from\s+|import\()(["'])(\.{1,2}\/[^"']*?)\.ts\2/g, "$1$2$3.js$2"));
      }
    }
  };
  rewrite("dist/types");
}
