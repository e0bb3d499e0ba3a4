/**
 * Entry of the `cohesix` host command (bundled to dist/cohesix.mjs).
 * @module
 */
import { main } from "./main.ts";

const code = await main(process.argv.slice(2), {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
  env: process.env,
});
// Let stdout drain before exiting; servers have already closed their sockets.
process.exitCode = code;
