/**
 * Entry of the guest bundle (`/opt/cohesix/dist/guest.mjs`): runs
 * {@link runGuest} and exits 0 after a clean stop, 1 on a failure (the init
 * script then powers the machine off).
 * @module
 */
import { runGuest } from "./guest.ts";

runGuest().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`cohesix: root task failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
