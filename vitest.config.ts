import { statSync } from "node:fs";
import { BaseSequencer, type TestSpecification } from "vitest/node";
import { defineConfig } from "vitest/config";

/**
 * Suites that boot QEMU or run kill -9 campaigns take minutes each. On a
 * clean clone vitest knows no durations and runs files in path order, which
 * left the longest (test/update/*.e2e) for last. They start first here,
 * longest first: with several workers they end together, and with one (a
 * 2-core machine: vitest takes cores − 1) a failure there shows early.
 */
const SLOW = /\.e2e\.test\.ts$|crash|outage|exhaustion-replay/;
/** The longest of them, longest first (seconds measured on a quiet 2-core machine: 211, 190, 180, 180, 145, 75, 70). */
const LONGEST = ["root-task-crash-concurrent", "confirm.e2e", "ab-power-cuts", "ab-acceptance", "fleet/outage", "uboot-ab.e2e", "pack.e2e"];

function rank(file: string): number {
  const i = LONGEST.findIndex((name) => file.includes(`${name}.test.ts`) || file.includes(`/${name}.`));
  return i === -1 ? LONGEST.length : i;
}

class SlowFirstSequencer extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const size = (f: TestSpecification): number => statSync(f.moduleId).size;
    const slow = sorted.filter((f) => SLOW.test(f.moduleId)).sort((a, b) => rank(a.moduleId) - rank(b.moduleId) || size(b) - size(a));
    return [...slow, ...sorted.filter((f) => !SLOW.test(f.moduleId))];
  }
}

/**
 * vitest for the whole repository. The global setup builds the CLI once so
 * that tests which run `node bin/cohesix.js` use a dist/ built from the
 * sources under test; process tests get generous timeouts.
 */
export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/global-setup.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    sequence: { sequencer: SlowFirstSequencer },
  },
});
