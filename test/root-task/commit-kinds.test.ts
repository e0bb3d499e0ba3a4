/**
 * One table of commit kinds: records read back from disk are checked
 * against it, and boot refuses a log holding a record it cannot replay.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { Appliance, COMMIT_KINDS, CommitLog, applyCommit, commitFromRecord, commitLogKey, genesis, writeKeyPair } from "../../root-task/index.ts";
import { publicKeyOf } from "../../root-task/keys.ts";

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "cohesix-kinds-"));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("the commit-kind table", () => {
  test("holds every kind the root task writes, exit included, and nothing it never writes", () => {
    expect(Object.keys(COMMIT_KINDS).sort()).toEqual(["bind", "budget", "ctr", "exit", "key", "lifecycle", "mount", "spawn", "unbind"]);
  });

  test("a record of a kind the table lacks is an error that names the kind and the record", () => {
    expect(() => commitFromRecord({ seq: 4, kind: "teleport", body: {} })).toThrow(/^invalid: commit log: record 4: unknown kind "teleport" \(known: spawn, exit, /);
    expect(() => commitFromRecord({ seq: 5, kind: "toString", body: {} })).toThrow(/unknown kind "toString"/);
  });

  test("a record whose body does not fit its kind is an error that names the field", () => {
    expect(() => commitFromRecord({ seq: 2, kind: "ctr", body: { ctr: "9" } })).toThrow('invalid: commit log: record 2 (ctr): field ctr must be a number, got "9"');
    expect(() => commitFromRecord({ seq: 3, kind: "exit", body: { id: "worker-1", status: "gone", reason: "x" } })).toThrow(/record 3 \(exit\): field status must be one of exited, killed, revoked/);
    expect(() => commitFromRecord({ seq: 6, kind: "spawn", body: { id: "../x", kind: "heartbeat", role: "worker-heartbeat", budget: {}, ts_ms: 1 } })).toThrow(/field id must be worker-<n>/);
    expect(() => commitFromRecord({ seq: 7, kind: "budget", body: null })).toThrow(/record 7 \(budget\): body must be an object/);
  });

  test("a well-formed record replays to the same state as the commit it came from", () => {
    const c = commitFromRecord({ seq: 1, kind: "spawn", body: { id: "worker-3", kind: "heartbeat", role: "worker-heartbeat", budget: { ticks: 2 }, restart: false, ts_ms: 5 } });
    expect(applyCommit(genesis, c).nextWorker).toBe(4);
  });

  test("boot refuses a log with a record of an unknown kind, naming it", async () => {
    const stateDir = join(dir, "state");
    const queen = await writeKeyPair(join(dir, "keys"), { name: "queen" });
    const first = await Appliance.boot({ board: "host", stateDir, queenPublicKey: publicKeyOf(queen.privateKey) });
    const bootKey = first.bootKey;
    await first.shutdown("test");
    const log = await CommitLog.open(stateDir, { key: commitLogKey(bootKey) });
    const r = await log.append("teleport", { to: "mars" });
    await log.close();
    await expect(Appliance.boot({ board: "host", stateDir, queenPublicKey: publicKeyOf(queen.privateKey) })).rejects.toThrow(
      `commit log: record ${r.seq}: unknown kind "teleport"`,
    );
  });
});
