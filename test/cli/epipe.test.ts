/**
 * A reader that goes away early (`cohesix cat /log/queen.log | head -n 1`)
 * ends the command quietly: no stack trace, exit 0. Real pipes through
 * bash, against a `cohesix serve` child on an ephemeral port.
 */
import { execa } from "execa";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { BIN, ROOT, cohesix, makeScratch, serve, type Scratch, type Served } from "./helpers.ts";

let scratch: Scratch;
let served: Served;

beforeAll(async () => {
  scratch = await makeScratch();
  served = await serve(scratch);
  // Refused commands are logged too: lines in /log/queen.log without starting workers.
  for (let i = 0; i < 3; i++) await remote(["ctl", `{"spawn":"nope-${i}"}`]);
});

afterAll(async () => {
  await served?.stop();
  await scratch?.remove();
});

function remote(args: readonly string[]) {
  return cohesix([...args, "--addr", served.addr, "--key", scratch.queenKey], { env: scratch.env });
}

/** Runs `cohesix ARGS | head -n 1` in bash; the CLI's exit code is on the last stderr line. */
function piped(args: readonly string[]) {
  const quoted = [BIN, ...args, "--addr", served.addr, "--key", scratch.queenKey].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(" ");
  return execa("bash", ["-c", `node ${quoted} | head -n 1; echo "exit=\${PIPESTATUS[0]}" >&2`], {
    cwd: ROOT,
    env: { ...process.env, ...scratch.env },
    reject: false,
    timeout: 30_000,
  });
}

function expectQuietEnd(r: { stderr: string; stdout: string }): void {
  expect(r.stderr.trim()).toBe("exit=0");
  expect(r.stdout.split("\n").filter(Boolean)).toHaveLength(1);
}

describe("a closed stdout", () => {
  test("cat /log/queen.log | head -n 1 prints one line and ends quietly with 0", async () => {
    expectQuietEnd(await piped(["cat", "/log/queen.log"]));
  });

  test("tail -f | head -n 1 stops following once head has gone, quietly with 0", async () => {
    const run = piped(["tail", "-f", "-n", "0", "/log/queen.log"]);
    let ended = false;
    void run.then(() => (ended = true));
    // Appends until the follower has gone: the first reaches head, a later one meets the closed pipe.
    for (let i = 0; i < 60 && !ended; i++) {
      await remote(["ctl", `{"spawn":"later-${i}"}`]);
      await Promise.race([run, sleep(300)]);
    }
    expectQuietEnd(await run);
  }, 60_000);

  test("help | head -n 1 ends quietly too", async () => {
    const r = await execa("bash", ["-c", `node '${BIN}' help | head -n 1; echo "exit=\${PIPESTATUS[0]}" >&2`], { cwd: ROOT, reject: false });
    expectQuietEnd(r);
  });
});
