import { defineConfig } from "vitest/config";

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
  },
});
