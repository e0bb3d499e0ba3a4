/**
 * vitest global setup: builds dist/ with esbuild once per run, so the CLI
 * tests exercise the sources in this checkout rather than a stale bundle.
 */
import { execa } from "execa";
import { fileURLToPath } from "node:url";

export default async function setup(): Promise<void> {
  const root = fileURLToPath(new URL("..", import.meta.url));
  await execa("node", ["scripts/build.mjs"], { cwd: root, stdio: "inherit" });
}
