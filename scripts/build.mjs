// Builds the host CLI into dist/ with esbuild, and each worker program
// (workers/<name>/main.ts) into dist/workers/<name>.mjs, which the root task
// runs as its own process. npm dependencies stay external on the host (they
// are installed beside the package); guest images bundle everything
// themselves (see rootfs/).
//
//   node scripts/build.mjs            CLI, worker API, worker programs and the dashboard's page
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

// The CLI: dist/cohesix.mjs holds the verb table (cli/verbs.ts) and the
// dispatcher; each module a verb loads with `import("./X.ts")` is a bundle
// of its own, dist/cli/X.mjs, so `cohesix ls` loads the 9P client and the
// ticket code and never esbuild, execa or serialport. The folders' entry
// files (nine-door/index.ts, root-task/index.ts …) re-export everything;
// our sources have no import-for-effect, so these bundles treat them as
// free of side effects and drop what a verb does not use. Bundles may
// repeat shared code: each invocation loads one. dist/cli-meta.json
// records what each bundle imports (test/cli/lazy.test.ts reads it).
if (!workersOnly) {
  const verbModules = [...new Set([...readFileSync("cli/verbs.ts", "utf8").matchAll(/import\("\.\/([a-z0-9-]+)\.ts"\)/g)].map((m) => m[1]))].filter((n) => n !== "main");
  const treeShakeBarrels = {
    name: "tree-shake-barrels",
    setup(b) {
      b.onResolve({ filter: /^\.\.?\// }, async (args) => {
        if (args.kind === "entry-point" || args.pluginData?.again) return undefined;
        const r = await b.resolve(args.path, { kind: args.kind, importer: args.importer, resolveDir: args.resolveDir, pluginData: { again: true } });
        if (r.errors.length > 0 || r.path.includes("/node_modules/")) return undefined;
        return { path: r.path, sideEffects: false };
      });
    },
  };
  // `import("./remote.ts")` in the verb table becomes a load of its bundle, relative to the importing bundle.
  const verbBundles = (prefix) => ({
    name: "verb-bundles",
    setup(b) {
      b.onResolve({ filter: /^\.\/[a-z0-9-]+\.ts$/ }, (args) => {
        const n = args.path.slice(2, -3);
        if (args.kind !== "dynamic-import" || !verbModules.includes(n) || !args.importer.endsWith(join("cli", "verbs.ts"))) return undefined;
        return { path: `${prefix}${n}.mjs`, external: true };
      });
    },
  });
  const common = { absWorkingDir: root, outdir: "dist", outExtension: { ".js": ".mjs" }, bundle: true, platform: "node", target: "node20", format: "esm", packages: "external", sourcemap: true, metafile: true, logLevel: "warning" };
  rmSync("dist/cli", { recursive: true, force: true });
  const entry = await build({ ...common, entryPoints: { cohesix: "./cli/index.ts" }, plugins: [verbBundles("./cli/")] });
  const verbs = await build({ ...common, entryPoints: Object.fromEntries(verbModules.map((n) => [`cli/${n}`, `./cli/${n}.ts`])), plugins: [treeShakeBarrels, verbBundles("./")] });
  writeFileSync("dist/cli-meta.json", JSON.stringify({ outputs: { ...entry.metafile.outputs, ...verbs.metafile.outputs } }));
}

// The dashboard's page (dashboard/page/): one browser bundle, dist/dashboard/app.js
// and app.css (Preact, htm, uPlot and its CSS inside), which `cohesix dashboard` serves.
if (!workersOnly && existsSync("dashboard/page/main.ts")) {
  await build({
    absWorkingDir: root,
    entryPoints: { app: "./dashboard/page/main.ts" },
    outdir: "dist/dashboard",
    bundle: true,
    platform: "browser",
    target: ["chrome110", "firefox115", "safari16"],
    format: "esm",
    minify: true,
    sourcemap: true,
    logLevel: "warning",
  });
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
