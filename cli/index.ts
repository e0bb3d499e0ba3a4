/**
 * Entry of the `cohesix` host command (bundled to dist/cohesix.mjs).
 * A reader that goes away (`cohesix cat /log/queen.log | head`) ends the
 * command quietly: output stops, a verb that holds something open (serve,
 * tail -f) is asked to stop as on SIGTERM, and the exit code is 0.
 * @module
 */
import { main } from "./main.ts";

let stdoutClosed = false;
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code !== "EPIPE") throw err;
  if (stdoutClosed) return;
  stdoutClosed = true;
  process.exitCode = 0;
  // Verbs that hold a server, a VM or a follow loop stop on SIGTERM; the rest end by themselves.
  if (process.listenerCount("SIGTERM") > 0) process.emit("SIGTERM", "SIGTERM");
  else process.exit(0);
});
process.stderr.on("error", () => {});

const code = await main(process.argv.slice(2), {
  out: (text) => {
    if (!stdoutClosed) process.stdout.write(text);
  },
  err: (text) => process.stderr.write(text),
  env: process.env,
  tty: process.stderr.isTTY === true,
  columns: process.stderr.columns || 80,
});
// Let stdout drain before exiting; servers have already closed their sockets.
process.exitCode = stdoutClosed ? 0 : code;
