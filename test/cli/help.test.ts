/**
 * Help made from the verb declarations (cli/verbs.ts): every verb's
 * `--help` names its options and shows an example, `cohesix help VERB` says
 * the same, a misspelled verb or option gets "did you mean", the README's
 * command table is the generated one, and `--version` is package.json's.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { markdownTable } from "../../cli/help.ts";
import { allVerbs, main } from "../../cli/main.ts";
import { closest, parseVerb } from "../../cli/verb.ts";
import { VERBS } from "../../cli/verbs.ts";
import { ROOT, cohesix } from "./helpers.ts";

/** Runs main() in this process and collects what it writes. */
async function run(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const code = await main(argv, { out: (t) => (out += String(t)), err: (t) => (err += t), env: {} });
  return { code, out, err };
}

describe("cohesix VERB --help", () => {
  test("every verb's --help names each of its options and shows an example, and exits 0", async () => {
    const verbs = allVerbs();
    expect(verbs.length).toBeGreaterThan(20);
    for (const { verb, path } of verbs) {
      const r = await run([...path, "--help"]);
      expect(r.code, path.join(" ")).toBe(0);
      expect(r.out, path.join(" ")).toMatch(new RegExp(`^usage: cohesix ${path.join(" ")}`));
      for (const name of Object.keys(verb.options ?? {})) expect(r.out, `${path.join(" ")} --${name}`).toContain(`--${name}`);
      expect(r.out, path.join(" ")).toMatch(/\nexamples:\n {2}(cohesix|source <\(cohesix) /);
      expect(verb.examples?.length ?? 0, path.join(" ")).toBeGreaterThan(0);
    }
  });

  test("-h and `cohesix help VERB` print the same help as --help", async () => {
    const a = await run(["image", "verify", "--help"]);
    expect((await run(["image", "verify", "-h"])).out).toBe(a.out);
    expect((await run(["help", "image", "verify"])).out).toBe(a.out);
    expect(a.out).toContain("--pub FILE");
  });

  test("help shows defaults, choices and environment variables", async () => {
    const r = await run(["tail", "--help"]);
    expect(r.out).toMatch(/-n, --lines N +how many lines \(default 10\)/);
    expect(r.out).toMatch(/--dialect DIALECT .*one of 9P2000, 9P2000\.L; default 9P2000/);
    expect(r.out).toMatch(/--addr DIAL .*env COHESIX_ADDR/);
  });

  test("the global usage lists every verb with its summary, on stdout for help and stderr with no command", async () => {
    const h = await run(["help"]);
    expect(h.code).toBe(0);
    for (const { path, verb } of allVerbs()) expect(h.out).toContain(`  ${path.join(" ").padEnd(16)} ${verb.summary}`);
    const none = await run([]);
    expect(none.code).toBe(2);
    expect(none.err).toBe(h.out);
  });
});

describe("did you mean", () => {
  test("a misspelled verb gets one line naming the nearest verb, exit 2", async () => {
    const r = await run(["lss", "/"]);
    expect(r.code).toBe(2);
    expect(r.err.trimEnd().split("\n")).toHaveLength(1);
    expect(r.err).toMatch(/^cohesix: unknown command "lss": did you mean ls\?/);
  });

  test("a misspelled sub-verb and a misspelled option are named too", async () => {
    const sub = await run(["image", "verfy", "x.img"]);
    expect(sub.code).toBe(2);
    expect(sub.err).toMatch(/did you mean image verify\?/);
    const opt = await run(["build", "--bord", "aarch64-virt"]);
    expect(opt.code).toBe(2);
    expect(opt.err).toMatch(/^cohesix build: unknown option --bord \(did you mean --board\?\)/);
  });

  test("closest() takes typos, not strangers", () => {
    expect(closest("lss", ["ls", "cat"])).toBe("ls");
    expect(closest("tial", ["tail", "ls"])).toBe("tail");
    expect(closest("frobnicate", ["ls", "cat", "tail"])).toBeUndefined();
  });
});

describe("parsing from the declaration", () => {
  const tail = VERBS.find((v) => v.name === "tail")!;
  test("fills in declared defaults and names a missing argument", () => {
    expect(parseVerb(["/log/queen.log"], tail).values.lines).toBe("10");
    expect(() => parseVerb([], tail)).toThrow(/^missing PATH$/);
  });

  test("tail -n -3 is one clean line, not the parser's internals", () => {
    expect(() => parseVerb(["-n", "-3", "/log/queen.log"], tail)).toThrow(/^-n\/--lines must be a whole number of at least 0, got "-3"$/);
  });
});

describe("README and version", () => {
  test("the README's command table is the one generated from the declarations", () => {
    const readme = readFileSync(join(ROOT, "README.md"), "utf8");
    const start = readme.indexOf("| command | what it does |");
    const end = readme.indexOf("<!-- end of the generated table -->");
    expect(start).toBeGreaterThan(0);
    expect(readme.slice(start, end)).toBe(markdownTable(VERBS));
    for (const name of ["fetch", "gpu-bridge", "completion"]) expect(readme.slice(start, end)).toContain(`| \`cohesix ${name}`);
  });

  test("the README's exit-code paragraph names every class, io: included", () => {
    const readme = readFileSync(join(ROOT, "README.md"), "utf8");
    const paragraph = readme.slice(readme.indexOf("Every command exits 0"), readme.indexOf("| command | what it does |"));
    for (const cls of ["not found", "permission", "invalid", "busy", "too big", "closed", "io"]) expect(paragraph).toContain(`\`${cls}: …\``);
  });

  test("cohesix --version prints package.json's version, from the built program too", async () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string };
    expect((await run(["--version"])).out).toBe(`cohesix ${pkg.version}\n`);
    const r = await cohesix(["--version"]);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe(`cohesix ${pkg.version}`);
  });
});
