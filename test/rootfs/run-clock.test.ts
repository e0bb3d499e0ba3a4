/**
 * The run script's clock step (rootfs/init.ts): the root task sends its
 * parent shell SIGUSR1 and the shell runs `hwclock -s`, while it keeps
 * waiting for Node and still ends with Node's exit status. The script's
 * own lines run here under the host's sh, with the step and Node stood in
 * for; the guest's busybox sh runs them in test/qemu/restore-clock.e2e.test.ts.
 */
import { execa } from "execa";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { HWCLOCK_PID_ENV as ROOT_TASK_ENV, hwclockCommand } from "../../root-task/index.ts";
import { HWCLOCK_PID_ENV, HWCLOCK_STEP, LOADER, runScript } from "../../rootfs/index.ts";

const work = mkdtempSync(join(tmpdir(), "cohesix-run-clock-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const options = { modules: [], address: "10.0.2.15/24", gateway: "10.0.2.2", stateDir: "/var/lib/cohesix" };

/** The run script's lines from the trap to the end of the wait loop. */
function clockLines(): string[] {
  const lines = runScript(options).split("\n");
  const start = lines.findIndex((l) => l.startsWith("trap "));
  const end = lines.findIndex((l) => l.startsWith("while wait "));
  expect(start).toBeGreaterThan(0);
  expect(end).toBeGreaterThan(start);
  return lines.slice(start, end + 1);
}

describe("run script: the clock step", () => {
  it("agrees with the root task on the variable and the command", () => {
    expect(HWCLOCK_PID_ENV).toBe(ROOT_TASK_ENV);
    expect(HWCLOCK_STEP).toBe(hwclockCommand().join(" "));
    const lines = clockLines();
    expect(lines[0]).toBe(`trap '${HWCLOCK_STEP}' USR1`);
    expect(lines[1]).toBe(`${HWCLOCK_PID_ENV}=$$ /usr/bin/node $node_flags ${LOADER} &`);
  });

  it("runs the step on each SIGUSR1 from Node, keeps waiting, and ends with Node's status", async () => {
    const steps = join(work, "steps");
    const child = join(work, "child.mjs");
    // Node stood in for: signals its parent twice, then exits 7.
    writeFileSync(
      child,
      [
        `const pid = Number(process.env.${HWCLOCK_PID_ENV});`,
        'const { readFileSync, existsSync } = await import("node:fs");',
        `const count = () => (existsSync(${JSON.stringify(steps)}) ? readFileSync(${JSON.stringify(steps)}, "utf8").split("\\n").filter(Boolean).length : 0);`,
        "for (let i = 1; i <= 2; i++) {",
        '  process.kill(pid, "SIGUSR1");',
        "  while (count() < i) await new Promise((r) => setTimeout(r, 10));",
        "}",
        "process.exit(7);",
      ].join("\n"),
    );
    const script = clockLines()
      .map((l) => l.replace(HWCLOCK_STEP, `echo stepped >> ${steps}`).replace(`/usr/bin/node $node_flags ${LOADER}`, `${process.execPath} ${child}`))
      .concat(['echo "rc=$rc"'])
      .join("\n");
    const r = await execa("sh", ["-c", script], { reject: false, timeout: 30_000 });
    expect(r.stdout, r.stderr).toBe("rc=7");
    expect(readFileSync(steps, "utf8")).toBe("stepped\nstepped\n");
  });
});
