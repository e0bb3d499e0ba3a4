/**
 * `cohesix completion bash|zsh`: the scripts come from the verb table, and
 * bash, with the script sourced, completes verbs, sub-verbs, options and
 * option choices the way a user's Tab would.
 */
import { spawnSync } from "node:child_process";
import { describe, expect, test } from "vitest";
import { allVerbs } from "../../cli/main.ts";
import { VERBS } from "../../cli/verbs.ts";
import { cohesix } from "./helpers.ts";

let script: string | undefined;
async function bashScript(): Promise<string> {
  if (script === undefined) {
    const r = await cohesix(["completion", "bash"]);
    expect(r.exitCode, r.stderr).toBe(0);
    script = r.stdout;
  }
  return script;
}

/** What bash's completion function offers for the command line `words` (the last word is the one being completed). */
async function complete(words: readonly string[]): Promise<string[]> {
  const quoted = words.map((w) => `'${w.replace(/'/g, "'\\''")}'`).join(" ");
  const program = `${await bashScript()}
fn=$(complete -p cohesix | sed -E 's/.*-F ([^ ]+).*/\\1/')
COMP_WORDS=(${quoted}); COMP_CWORD=${words.length - 1}; COMP_LINE="\${COMP_WORDS[*]}"; COMP_POINT=\${#COMP_LINE}
"$fn" cohesix "\${COMP_WORDS[COMP_CWORD]}" "\${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\\n' "\${COMPREPLY[@]}"
`;
  const r = spawnSync("bash", ["--norc", "--noprofile", "-c", program], { encoding: "utf8" });
  expect(r.status, r.stderr).toBe(0);
  return r.stdout.split("\n").filter(Boolean).sort();
}

describe("cohesix completion bash", () => {
  test("registers a completion for cohesix that bash accepts", async () => {
    const r = spawnSync("bash", ["--norc", "--noprofile", "-c", `${await bashScript()}\ncomplete -p cohesix`], { encoding: "utf8" });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^complete .*-F _cohesix cohesix$/m);
  });

  test("`cohesix l` completes to every verb that starts with l (log logs ls)", async () => {
    const expected = VERBS.filter((v) => v.name.startsWith("l")).map((v) => v.name).sort();
    expect(expected).toEqual(expect.arrayContaining(["log", "ls"]));
    expect(await complete(["cohesix", "l"])).toEqual(expected);
  });

  test("completes sub-verbs, options and an option's choices", async () => {
    expect(await complete(["cohesix", "vm", ""])).toEqual(["pause", "restore", "resume", "snapshot", "snapshots"]);
    expect(await complete(["cohesix", "image", "v"])).toEqual(["verify"]);
    expect(await complete(["cohesix", "image", "verify", "--p"])).toEqual(["--pub"]);
    expect(await complete(["cohesix", "ls", "--di"])).toEqual(["--dialect"]);
    expect(await complete(["cohesix", "gpu-bridge", "--backend", ""])).toEqual(["auto", "nvml", "sim"]);
    expect(await complete(["cohesix", "help", "gpu"])).toEqual(["gpu-bridge"]);
  });

  test("every verb and each of its options is in the script", async () => {
    const text = await bashScript();
    for (const { verb, path } of allVerbs()) {
      expect(text).toContain(`'${path.join(" ")}')`);
      for (const name of Object.keys(verb.options ?? {})) expect(text).toContain(`--${name}`);
    }
  });
});

describe("cohesix completion zsh", () => {
  test("is a #compdef script naming every verb with its summary", async () => {
    const r = await cohesix(["completion", "zsh"]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout.startsWith("#compdef cohesix\n")).toBe(true);
    for (const v of VERBS) expect(r.stdout).toContain(`'${v.name}:`);
    const zsh = spawnSync("zsh", ["-n"], { input: r.stdout, encoding: "utf8" });
    // scripts/setup.sh installs zsh, so the script is checked for syntax by zsh itself.
    expect(zsh.error, "zsh is not installed: run scripts/setup.sh").toBeUndefined();
    expect(zsh.status, zsh.stderr).toBe(0);
  });

  test("an unknown shell is a usage error", async () => {
    const r = await cohesix(["completion", "fish"]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/^cohesix completion: SHELL must be bash or zsh, got "fish"/);
  });
});
