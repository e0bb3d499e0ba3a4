/**
 * The queen shell, `cohesix sh`, against a served host-board appliance:
 * scripts (`-c` and stdin), and the interactive shell in a real terminal
 * (util-linux `script` gives it a pty, as readline completes only on a
 * TTY): the prompt, tab completion from the namespace, and history kept
 * across two runs.
 */
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { execa } from "execa";
import { complete } from "../../cli/shell.ts";
import { completionTarget, rawAfter, parseLine, resolvePath, splitCommands } from "../../cli/shell-words.ts";
import { waitFor } from "./appliance-helpers.ts";
import { BIN, makeScratch, serve, type Scratch, type Served } from "./helpers.ts";

let scratch: Scratch;
let served: Served;

beforeAll(async () => {
  scratch = await makeScratch();
  served = await serve(scratch);
});

afterAll(async () => {
  await served?.stop();
  await scratch?.remove();
});

function shEnv(): Record<string, string> {
  const base = { ...process.env } as Record<string, string>;
  delete base.COHESIX_ADDR;
  delete base.COHESIX_TIMEOUT;
  return { ...base, ...scratch.env, COHESIX_ADDR: served.addr, COHESIX_KEY: scratch.queenKey };
}

/** `cohesix sh ARGS…` with stdin from `input` (a pipe, not a terminal). */
function sh(args: readonly string[], input = "") {
  return execa("node", [BIN, "sh", ...args], { env: shEnv(), extendEnv: false, reject: false, input, timeout: 30_000 });
}

describe("the shell's words", () => {
  test("a script splits at ; and new lines outside quotes, without comments", () => {
    expect(splitCommands(`ls /proc; ctl {"spawn":"a;b"}\n# nothing\ncat '/x;y' # tail`)).toEqual(["ls /proc", 'ctl {"spawn":"a;b"}', "cat '/x;y'"]);
  });

  test("ctl and write take the rest of the line as typed, double quotes kept", () => {
    expect(rawAfter(parseLine('ctl {"kill":"worker-2"}'), 1)).toBe('{"kill":"worker-2"}');
    expect(rawAfter(parseLine(`ctl '{"kill":"worker-2"}'`), 1)).toBe('{"kill":"worker-2"}');
    expect(rawAfter(parseLine("write /queen/lifecycle/ctl drain"), 2)).toBe("drain");
  });

  test("paths resolve against the working directory, never above /", () => {
    expect(resolvePath("/worker", "../proc/boot")).toBe("/proc/boot");
    expect(resolvePath("/", "../../..")).toBe("/");
    expect(completionTarget("/", "/wo")).toEqual({ dir: "/", keep: "/", prefix: "wo" });
    expect(completionTarget("/proc", "lifecycle/st")).toEqual({ dir: "/proc/lifecycle", keep: "lifecycle/", prefix: "st" });
  });
});

describe("cohesix sh scripts", () => {
  test("-c runs each command over one session, cd carrying over, and exits 0", async () => {
    const r = await sh(["-c", "cat /proc/sessions; cd /proc; pwd; cat lifecycle/state; ls lifecycle; ls /worker; pwd; cat /proc/sessions"]);
    expect(r.stderr).toBe("");
    expect(r.exitCode).toBe(0);
    const [firstRead, middle, secondRead] = r.stdout.split("\n/proc\n");
    expect(middle!.split("\n").slice(0, 4)).toEqual(["ONLINE", "reason", "since", "state"]);
    // One session: the last read of /proc/sessions shows no session the first did not.
    const ids = (text: string) => text.split("\n").filter((l) => l.startsWith("id=")).map((l) => l.split(" ")[0]!);
    expect(ids(secondRead!).length).toBeGreaterThan(0);
    for (const id of ids(secondRead!)) expect(ids(firstRead!)).toContain(id);
  });

  test("spawn, ctl and kill go through the signed ctl path and print the worker id", async () => {
    const r = await sh(["-c", 'spawn heartbeat --ticks 1000; ctl {"spawn":"heartbeat","ticks":1000}']);
    expect(r.stderr).toBe("");
    const [a, b] = r.stdout.split("\n");
    expect(a).toMatch(/^worker-\d+$/);
    expect(b).toMatch(/^worker-\d+$/);
    const k = await sh(["-c", `kill ${a}; kill ${b!.replace("worker-", "")}`]);
    expect(k.stdout.split("\n")).toEqual([a, b]);
    expect(k.exitCode).toBe(0);
  });

  test("a failing command prints one line and the script goes on, exiting 1 at the end", async () => {
    const r = await sh(["-c", "cat /nope; lss /; ls /proc/lifecycle"]);
    expect(r.exitCode).toBe(1);
    expect(r.stdout).toBe("reason\nsince\nstate");
    expect(r.stderr.split("\n")).toEqual([expect.stringMatching(/^not found: /), "lss: unknown command; one of ls cat tail write ctl spawn kill logs cd pwd help exit"]);
  });

  test("exit N ends the script with that code", async () => {
    const r = await sh(["-c", "pwd; exit 3; pwd"]);
    expect(r.exitCode).toBe(3);
    expect(r.stdout).toBe("/");
  });

  test("reads commands from stdin when it is not a terminal", async () => {
    const r = await sh([], "cd /queen\nls\ncat /proc/lifecycle/state\n");
    expect(r.stderr).toBe("");
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain("ctl\n");
    expect(r.stdout.trimEnd().split("\n").at(-1)).toBe("ONLINE");
  });
});

/** `cohesix sh` in a pty (util-linux `script`); keys go in through script's stdin. */
class Terminal {
  readonly child: ChildProcessWithoutNullStreams;
  text = "";

  constructor() {
    const cmd = `exec node ${BIN} sh`;
    this.child = spawn("script", ["-qfec", cmd, "/dev/null"], { env: { ...shEnv(), TERM: "xterm" } });
    this.child.stdout.on("data", (d: Buffer) => (this.text += d.toString()));
    this.child.stderr.on("data", (d: Buffer) => (this.text += d.toString()));
  }

  /** What the terminal shows, without colour and cursor escapes. */
  get plain(): string {
    // eslint-disable-next-line no-control-regex
    return this.text.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, "").replace(/\r/g, "");
  }

  async expect(what: string | RegExp, from = 0): Promise<number> {
    return waitFor(`the terminal to show ${String(what)} (it shows ${JSON.stringify(this.plain.slice(-300))})`, () => {
      const shown = this.plain.slice(from);
      const at = typeof what === "string" ? shown.indexOf(what) : shown.search(what);
      return at >= 0 ? from + at + 1 : undefined;
    }, { timeoutMs: 20_000, intervalMs: 50 });
  }

  type(keys: string): void {
    this.child.stdin.write(keys);
  }

  async exited(): Promise<number | null> {
    if (this.child.exitCode !== null) return this.child.exitCode;
    return new Promise((r) => this.child.once("exit", (code) => r(code)));
  }

  kill(): void {
    if (this.child.exitCode === null && this.child.pid !== undefined) process.kill(this.child.pid, "SIGKILL");
  }
}

describe("cohesix sh in a terminal", () => {
  test("complete() offers /worker/ for /wo and command names for the first word", async () => {
    const { NineClient } = await import("../../nine-door/index.ts");
    const { mintTicket, readPrivateKey } = await import("../../root-task/index.ts");
    const client = await NineClient.dial(served.addr, { dialect: "9P2000" });
    try {
      const root = await client.attach({ uname: "queen", aname: mintTicket({ role: "queen", sub: "queen" }, await readPrivateKey(scratch.queenKey), { ttlS: 60 }) });
      expect(await complete(root, "/", "ls /wo")).toEqual([["/worker/"], "/wo"]);
      expect(await complete(root, "/proc", "cat life")).toEqual([["lifecycle/"], "life"]);
      expect(await complete(root, "/", "sp")).toEqual([["spawn "], "sp"]);
    } finally {
      client.close();
    }
  });

  test("shows a prompt with the appliance and its lifecycle, completes /wo to /worker/, and keeps history across two runs", async () => {
    const prompt = `cohesix ${served.addr} ONLINE /> `;
    const first = new Terminal();
    try {
      let at = await first.expect(prompt);
      first.type("ls /wo\t");
      at = await first.expect("ls /worker/", at);
      first.type("\r");
      at = await first.expect(prompt, at);
      // Ctrl-C stops a following tail -f and gives the prompt back.
      first.type("tail -f /log/queen.log\r");
      at = await first.expect(" attach queen queen from ", at); // this shell's own attach, among the last lines
      first.type("\x03");
      at = await first.expect(prompt, at);
      first.type("cd /proc\r");
      at = await first.expect(`cohesix ${served.addr} ONLINE /proc> `, at);
      first.type("exit\r");
      expect(await first.exited()).toBe(0);
    } finally {
      first.kill();
    }
    const history = await readFile(join(scratch.env.XDG_CONFIG_HOME!, "cohesix", "history"), "utf8");
    expect(history.trimEnd().split("\n").slice(-4)).toEqual(["ls /worker/", "tail -f /log/queen.log", "cd /proc", "exit"]);

    // A second run recalls the first run's lines with the up arrow.
    const second = new Terminal();
    try {
      let at = await second.expect(prompt);
      second.type("\x1b[A\x1b[A");
      at = await second.expect("cd /proc", at);
      second.type("\r");
      at = await second.expect(`cohesix ${served.addr} ONLINE /proc> `, at);
      second.type("\x04"); // Ctrl-D leaves
      expect(await second.exited()).toBe(0);
    } finally {
      second.kill();
    }
  });
});
