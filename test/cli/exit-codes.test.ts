/**
 * Exit codes as the README states them, walked over every verb of the
 * table: a wrong option, a missing argument and a bad value each exit 2
 * with exactly one line on stderr that names the mistake and ends with the
 * verb's usage. Plus the cases that used to exit 0 or 1, or print the
 * parser's internals.
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { allVerbs, main } from "../../cli/main.ts";
import type { Verb } from "../../cli/verb.ts";
import { CommitLog } from "../../root-task/index.ts";

let scratch: string;
beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), "cohesix-exit-"));
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

/** Runs main() in this process; nothing here gets past parsing, so no verb does anything. */
async function run(argv: readonly string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const code = await main(argv, { out: (t) => (out += String(t)), err: (t) => (err += t), env: { XDG_CONFIG_HOME: join(scratch, "config") } });
  return { code, out, err };
}

/** A usage error: exit 2, one line that names the verb and ends with its usage and a pointer to its help. */
function expectUsageLine(r: { code: number; err: string }, path: readonly string[], what: RegExp): void {
  const name = path.join(" ");
  expect(r.code, `${name}: ${r.err}`).toBe(2);
  const lines = r.err.trimEnd().split("\n");
  expect(lines, name).toHaveLength(1);
  expect(lines[0], name).toMatch(new RegExp(`^cohesix ${name}: `));
  expect(lines[0], name).toMatch(what);
  expect(lines[0], name).toMatch(new RegExp(`\\(usage: cohesix .*; see 'cohesix ${name} --help'\\)$`));
}

/** Plausible values for a verb's required arguments. */
function argsFor(verb: Verb): string[] {
  return (verb.args ?? []).filter((a) => !a.optional).map((a) => (a.name === "PATH" ? "/proc/boot" : a.name === "SHELL" ? "bash" : "x"));
}

/** One option given a value it can't take, and the message that says so. */
function badValue(verb: Verb): { argv: string[]; what: RegExp } | undefined {
  const options = Object.entries(verb.options ?? {});
  const choice = options.find(([, o]) => o.choices);
  if (choice) return { argv: [`--${choice[0]}`, "bogus-value"], what: new RegExp(`--${choice[0]} must be .*, got "bogus-value"`) };
  const counted = options.find(([, o]) => o.min !== undefined);
  if (counted) return { argv: [`--${counted[0]}`, "many"], what: new RegExp(`--${counted[0]} must be a whole number`) };
  const text = options.find(([, o]) => o.type === "string");
  if (text) return { argv: [`--${text[0]}`], what: new RegExp(`--${text[0]} needs a value`) };
  const flag = options.find(([, o]) => o.type === "boolean");
  if (flag) return { argv: [`--${flag[0]}=yes`], what: new RegExp(`--${flag[0]} takes no value`) };
  return undefined;
}

describe("every verb's usage errors exit 2 with one line", () => {
  const verbs = allVerbs();

  test.each(verbs.map((r) => [r.path.join(" "), r] as const))("%s: a wrong option", async (_, { verb, path }) => {
    const r = await run([...path, ...argsFor(verb), "--no-such-option"]);
    expectUsageLine(r, path, /unknown option --no-such-option/);
  });

  test.each(verbs.filter((r) => (r.verb.args ?? []).some((a) => !a.optional)).map((r) => [r.path.join(" "), r] as const))("%s: a missing argument is named", async (_, { verb, path }) => {
    const r = await run([...path]);
    expectUsageLine(r, path, new RegExp(`missing ${verb.args!.find((a) => !a.optional)!.name}`));
  });

  test.each(verbs.map((r) => [r.path.join(" "), r] as const))("%s: a bad value", async (_, { verb, path }) => {
    const bad = badValue(verb) ?? (path.join(" ") === "completion" ? { argv: [], what: /SHELL must be bash or zsh, got "fish"/ } : undefined);
    expect(bad, `${path.join(" ")} has no option to give a bad value`).toBeDefined();
    const args = path.join(" ") === "completion" ? ["fish"] : argsFor(verb);
    expectUsageLine(await run([...path, ...args, ...bad!.argv]), path, bad!.what);
  });
});

describe("the cases that exited wrongly", () => {
  test("build --board nosuch and down --board nosuch exit 2, listing the known boards", async () => {
    for (const verb of ["build", "down"]) {
      const r = await run([verb, "--board", "nosuch", "--dir", join(scratch, "never")]);
      expectUsageLine(r, [verb], /no board "nosuch" \(known: .*aarch64-virt/);
    }
  });

  test("log show DIR --kind bogus exits 2 with the known kinds; a kind the log holds is taken", async () => {
    const dir = join(scratch, "state");
    const log = await CommitLog.open(dir, { key: new Uint8Array(randomBytes(32)) });
    await log.append("spawn", { worker: "worker-1" });
    await log.append("update-slot", { slot: "b" });
    await log.close();
    const bogus = await run(["log", "show", dir, "--kind", "bogus"]);
    expectUsageLine(bogus, ["log", "show"], /--kind "bogus" is no kind of record: known kinds are spawn, kill, .*update-slot/);
    const held = await run(["log", "show", dir, "--kind", "update-slot"]);
    expect(held.code, held.err).toBe(0);
    expect(held.out.trimEnd().split("\n")).toHaveLength(1);
    const spawn = await run(["log", "show", dir, "--kind", "spawn"]);
    expect(spawn.code, spawn.err).toBe(0);
    expect(spawn.out).toContain("worker-1");
  });

  test("tail -n -3 is one clean usage line", async () => {
    expectUsageLine(await run(["tail", "-n", "-3", "/log/queen.log"]), ["tail"], /-n\/--lines must be a whole number of at least 0, got "-3"/);
  });

  test("a missing argument names it instead of counting", async () => {
    expectUsageLine(await run(["ls", "/", "/proc"]), ["ls"], /unexpected argument "\/proc"/);
    expectUsageLine(await run(["write", "/queen/ctl"]), ["write"], /missing TEXT/);
  });

  test("a verb with sub-verbs and none given names them", async () => {
    const r = await run(["vm"]);
    expectUsageLine(r, ["vm"], /missing the verb: pause, resume, snapshot, restore/);
  });
});
