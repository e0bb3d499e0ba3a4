/**
 * `cohesix log show --kind`: the kinds it takes come from the root task's
 * one commit-kind table, and the words kill and revoke select the exits of
 * workers that ended that way.
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { KNOWN_KINDS, logShow } from "../../cli/log.ts";
import { COMMIT_KINDS, CommitLog } from "../../root-task/index.ts";

let scratch: string;
beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), "cohesix-log-kinds-"));
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

async function show(dir: string, kind: string): Promise<string[]> {
  let out = "";
  await logShow({ values: { kind }, positionals: [dir] }, { out: (t) => (out += String(t)), err: () => undefined, env: {} });
  return out.trimEnd().split("\n").filter((l) => l !== "");
}

describe("log show --kind", () => {
  test("takes every kind of the commit-kind table, and nothing the table lacks but the exit words", () => {
    for (const kind of Object.keys(COMMIT_KINDS)) expect(KNOWN_KINDS).toContain(kind);
    expect(KNOWN_KINDS.filter((k) => !Object.hasOwn(COMMIT_KINDS, k)).sort()).toEqual(["kill", "revoke"]);
  });

  test("kill and revoke show the exits of killed and revoked workers, and no other record", async () => {
    const dir = join(scratch, "state");
    const log = await CommitLog.open(dir, { key: new Uint8Array(randomBytes(32)) });
    await log.append("exit", { id: "worker-1", status: "killed", reason: "killed by queen" });
    await log.append("exit", { id: "worker-2", status: "revoked", reason: "tick budget exhausted" });
    await log.append("exit", { id: "worker-3", status: "exited", reason: "exit code 0" });
    await log.close();
    const killed = await show(dir, "kill");
    expect(killed).toHaveLength(1);
    expect(killed[0]).toContain('"worker-1"');
    const revoked = await show(dir, "revoke");
    expect(revoked).toHaveLength(1);
    expect(revoked[0]).toContain('"worker-2"');
    expect(await show(dir, "exit")).toHaveLength(3);
  });
});
