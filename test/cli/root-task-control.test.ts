/**
 * Acceptance of the root task's control plane and commit log through the
 * real program (issue 3): bad input leaves no record and no state change,
 * signed control refuses plain, replayed and foreign envelopes (also after a
 * restart), and hand-damaged logs are reported by `cohesix log verify` and
 * refused by `cohesix serve` — a torn tail alone is cut with an audit line.
 */
import { randomBytes } from "node:crypto";
import { cp, readFile, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { LOG_FILE, encodeBody, encodeFrame, readPrivateKey, showLog, signEnvelope, writeKeyPair } from "../../root-task/index.ts";
import { Queen, recordCount, signalPid, stopServed, useServedSuite } from "./appliance-helpers.ts";
import { cohesix, makeScratch, serve, type Scratch, type Served } from "./helpers.ts";

/** `/proc/state` parsed: the seq of the last record folded in and the state. */
async function procState(queen: Queen): Promise<{ seq: number; state: Record<string, unknown> }> {
  return JSON.parse(await queen.cat("/proc/state")) as { seq: number; state: Record<string, unknown> };
}

describe("bad input gets a clear error and changes nothing", () => {
  const suite = useServedSuite();
  const state = () => join(suite.scratch.dir, "state");

  beforeAll(async () => {
    // Something to leave untouched: a running worker, a bind, budget defaults.
    expect((await suite.queen.run(["ctl", '{"spawn":"heartbeat","ticks":100000}'])).stdout).toBe("worker-1");
    expect((await suite.queen.run(["ctl", '{"bind":{"from":"/worker/worker-1","to":"/w1"}}'])).exitCode).toBe(0);
    expect((await suite.queen.run(["ctl", '{"budget":{"ops":500}}'])).exitCode).toBe(0);
  });

  const cases: Array<[string, string, RegExp]> = [
    ["an unknown field", '{"spawn":"heartbeat","colour":"red"}', /^invalid: unknown field "colour" in spawn/],
    ["an unknown field in a budget", '{"budget":{"ops":5,"speed":9}}', /^invalid: unknown field "speed" in budget/],
    ["an unknown command", '{"reboot":true}', /^invalid: unknown command "reboot"/],
    ["two commands in one write", '{"kill":"worker-1","budget":{"ops":1}}', /^invalid: one command per write/],
    ["text that is not JSON", "spawn heartbeat", /^invalid: not JSON/],
    ["killing an unknown worker", '{"kill":"worker-99"}', /^not found: no worker worker-99/],
    ["a bind from a path with ..", '{"bind":{"from":"/worker/..","to":"/w2"}}', /^invalid: bind\.from "\/worker\/\.\." must not contain \. or \.\./],
    ["a bind to a path with ..", '{"bind":{"from":"/proc","to":"/a/../.."}}', /^invalid: bind\.to .* must not contain \. or \.\./],
    ["a bind onto /", '{"bind":{"from":"/proc","to":"/"}}', /^invalid: bind\.to must not be \//],
    ["a spawn with zero ticks", '{"spawn":"heartbeat","ticks":0}', /^invalid: spawn\.ticks must be a positive integer, got 0/],
    ["a spawn with negative ticks", '{"spawn":"heartbeat","ticks":-3}', /^invalid: spawn\.ticks must be a positive integer, got -3/],
    ["a spawn with a zero ops budget", '{"spawn":"heartbeat","budget":{"ops":0}}', /^invalid: spawn\.budget\.ops must be a positive integer/],
    ["a spawn with a negative ttl", '{"spawn":"heartbeat","budget":{"ttl_s":-1}}', /^invalid: spawn\.budget\.ttl_s must be a positive integer/],
    ["budget defaults of zero", '{"budget":{"ticks":0}}', /^invalid: budget\.ticks must be a positive integer/],
    ["an unknown worker kind", '{"spawn":"toaster"}', /^not found: no worker "toaster" in this image \(known: gpu, heartbeat, inference\)/],
  ];

  for (const [what, command, error] of cases) {
    test(`${what} is refused (${command}) with no record and the same state`, async () => {
      const before = await procState(suite.queen);
      const records = await recordCount(state());
      // `cohesix ctl` signs its command; a refused one must not cost a record under the open policy.
      const r = command.startsWith("{") ? await suite.queen.run(["ctl", command]) : await suite.queen.run(["write", "/queen/ctl", command]);
      expect(r.exitCode).toBe(1);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(r.stderr).toMatch(error);
      expect(await recordCount(state())).toBe(records);
      expect(await procState(suite.queen)).toEqual(before);
    });
  }

  test("every refusal is audited in /log/queen.log", async () => {
    const log = await suite.queen.cat("/log/queen.log");
    expect(log).toMatch(/ctl from queen refused: invalid: unknown command "reboot"/);
    expect(log).toMatch(/ctl from queen refused: not found: no worker worker-99/);
  });

  test("a state directory that cannot be written is refused, naming the directory, without READY", async () => {
    const file = join(suite.scratch.dir, "plain-file");
    await writeFile(file, "not a directory\n");
    const dir = join(file, "state");
    const r = await cohesix(["serve", "--board", "host", "--listen", "127.0.0.1:0", "--state", dir, "--queen-pub", suite.scratch.queenPub], { env: suite.scratch.env });
    expect(r.exitCode).not.toBe(0);
    expect(r.stdout).not.toContain("READY");
    expect(r.stderr).toContain(`state directory ${dir}`);
  });
});

describe("signed control (--policy signed-ctl)", () => {
  let scratch: Scratch;
  let served: Served | undefined;
  let queen: Queen;
  let queenKey: Uint8Array;
  let envelope: string;

  beforeAll(async () => {
    scratch = await makeScratch();
    served = await serve(scratch, ["--policy", "signed-ctl"]);
    queen = new Queen(scratch, served);
    queenKey = await readPrivateKey(scratch.queenKey);
  });
  afterAll(async () => {
    await stopServed(served);
    await scratch?.remove();
  });

  test("a plain command is refused with invalid: telling to sign it", async () => {
    const r = await queen.run(["ctl", "--unsigned", '{"budget":{"ops":7}}']);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/^invalid: policy signed-ctl: wrap the command as \{"cmd"/);
    expect(r.stderr).toContain("cohesix ctl does this");
  });

  test("cohesix ctl signs automatically and the command is accepted", async () => {
    const before = Number(await queen.cat("/queen/ctr"));
    const r = await queen.run(["ctl", '{"budget":{"ops":7}}']);
    expect(r.stderr).toBe("");
    expect(r.exitCode).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: true, defaults: { ops: 7 } });
    expect(Number(await queen.cat("/queen/ctr"))).toBe(before + 1);
  });

  test("an envelope written twice is refused the second time with permission: replay", async () => {
    const ctr = Number(await queen.cat("/queen/ctr")) + 1;
    envelope = signEnvelope('{"budget":{"ttl_s":60}}', queenKey, { ctr });
    const first = await queen.run(["write", "/queen/ctl", envelope]);
    expect(first.stderr).toBe("");
    expect(first.exitCode).toBe(0);
    const again = await queen.run(["write", "/queen/ctl", envelope]);
    expect(again.exitCode).toBe(1);
    expect(again.stderr).toMatch(new RegExp(`^permission: replay: counter ${ctr} is not above the last accepted ${ctr}`));
    expect(await queen.cat("/queen/ctr")).toBe(String(ctr));
  });

  test("an envelope signed with another key is refused", async () => {
    const other = await writeKeyPair(join(scratch.dir, "other-keys"), { name: "queen" });
    const records = await recordCount(join(scratch.dir, "state"));
    const forged = signEnvelope('{"budget":{"ops":1}}', other.privateKey, { ctr: Number(await queen.cat("/queen/ctr")) + 1 });
    const r = await queen.run(["write", "/queen/ctl", forged]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/^permission: envelope signature does not verify against the queen key/);
    expect(await recordCount(join(scratch.dir, "state"))).toBe(records);
  });

  test("a signed but refused command burns only its counter: the rest of the state is unchanged", async () => {
    const before = await procState(queen);
    const r = await queen.run(["ctl", '{"kill":"worker-42"}']);
    expect(r.stderr).toMatch(/^not found: no worker worker-42/);
    const after = await procState(queen);
    expect(after.state).toEqual({ ...before.state, ctr: (before.state.ctr as number) + 1 });
    const { records } = await showLog(join(scratch.dir, "state"), { from: before.seq + 1 });
    expect(records.map((x) => x.kind)).toEqual(["ctr"]);
  });

  test("the counter survives kill -9 and a restart: the old envelope is still a replay", { timeout: 60_000 }, async () => {
    const ctr = await queen.cat("/queen/ctr");
    signalPid(served!.pid, "SIGKILL");
    await served!.child;
    served = await serve(scratch, ["--policy", "signed-ctl"]);
    queen.served = served;
    expect(await queen.cat("/queen/ctr")).toBe(ctr);
    const r = await queen.run(["write", "/queen/ctl", envelope]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/^permission: replay: /);
    expect((await queen.run(["ctl", '{"budget":{"ops":8}}'])).exitCode).toBe(0);
  });
});

describe("hand-damaged commit logs are reported, never silently accepted", () => {
  let scratch: Scratch;
  let pristine: string;
  let n = 0;

  beforeAll(async () => {
    scratch = await makeScratch();
    pristine = join(scratch.dir, "state");
    const served = await serve(scratch);
    const queen = new Queen(scratch, served);
    for (const ops of [11, 12, 13, 14, 15]) expect((await queen.run(["ctl", `{"budget":{"ops":${ops}}}`])).exitCode).toBe(0);
    await stopServed(served);
    expect(await recordCount(pristine)).toBeGreaterThanOrEqual(6);
  }, 60_000);
  afterAll(async () => {
    await scratch?.remove();
  });

  /** A copy of the pristine state directory, and its records' offsets. */
  async function copy(): Promise<{ dir: string; log: string; offsets: number[]; bytes: Buffer }> {
    const dir = join(scratch.dir, `damaged-${++n}`);
    await cp(pristine, dir, { recursive: true });
    const { records } = await showLog(dir);
    const log = join(dir, LOG_FILE);
    return { dir, log, offsets: records.map((r) => r.offset), bytes: await readFile(log) };
  }

  /** `cohesix serve` on `dir` must exit non-zero without READY, saying why. */
  async function expectServeRefuses(dir: string, why: RegExp): Promise<void> {
    const r = await cohesix(["serve", "--board", "host", "--listen", "127.0.0.1:0", "--state", dir, "--queen-pub", scratch.queenPub], { env: scratch.env, timeoutMs: 30_000 });
    expect(r.exitCode).not.toBe(0);
    expect(r.stdout).not.toContain("READY");
    expect(r.stderr).toMatch(why);
  }

  test("the pristine log verifies", async () => {
    const r = await cohesix(["log", "verify", pristine], { env: scratch.env });
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(/^ok=true$/m);
  });

  test("a log cut mid-record at the end is a torn tail: verify reports it, boot cuts it with an audit line", { timeout: 60_000 }, async () => {
    const d = await copy();
    const last = d.offsets.at(-1)!;
    await truncate(d.log, last + 7);
    const v = await cohesix(["log", "verify", d.dir], { env: scratch.env });
    expect(v.exitCode).toBe(0);
    expect(v.stdout).toMatch(/^torn_tail=\{"offset":\d+,"bytes":7,/m);
    expect(v.stdout).toMatch(new RegExp(`^records=${d.offsets.length - 1}$`, "m"));

    const served = await serve(scratch, [], { state: d.dir });
    try {
      const queen = new Queen(scratch, served);
      const log = await queen.cat("/log/queen.log");
      expect(log).toMatch(new RegExp(`commit log: cut torn tail at offset ${last} \\(7 bytes\\)`));
    } finally {
      await stopServed(served);
    }
    const after = await cohesix(["log", "verify", d.dir], { env: scratch.env });
    expect(after.exitCode).toBe(0);
    expect(after.stdout).not.toMatch(/torn_tail/);
  });

  test("a log with bytes cut out of the middle is refused by verify and by serve", { timeout: 60_000 }, async () => {
    const d = await copy();
    const at = d.offsets[2]! + 4;
    await writeFile(d.log, Buffer.concat([d.bytes.subarray(0, at), d.bytes.subarray(at + 9)]));
    const v = await cohesix(["log", "verify", d.dir], { env: scratch.env });
    expect(v.exitCode).not.toBe(0);
    expect(v.stdout).toMatch(/^ok=false$/m);
    expect(v.stderr).toMatch(/^invalid: commit log damaged: .*record 3 at offset \d+/);
    await expectServeRefuses(d.dir, /commit log: record 3 at offset \d+/);
  });

  test("a flipped byte in the middle is refused by verify and by serve", { timeout: 60_000 }, async () => {
    const d = await copy();
    const bytes = Buffer.from(d.bytes);
    const at = d.offsets[1]! + 12;
    bytes[at] = bytes[at]! ^ 0x40;
    await writeFile(d.log, bytes);
    const v = await cohesix(["log", "verify", d.dir], { env: scratch.env });
    expect(v.exitCode).not.toBe(0);
    expect(v.stderr).toMatch(/record 2 at offset \d+/);
    await expectServeRefuses(d.dir, /^invalid: commit log: record 2 at offset \d+/);
  });

  test("a forged record (right chain and checksum, wrong key) is refused by verify and by serve", { timeout: 60_000 }, async () => {
    const d = await copy();
    const { records } = await showLog(d.dir);
    const last = records.at(-1)!;
    const seq = last.seq + 1;
    const forged = encodeFrame(
      { seq, prev: last.hash, ts_ms: Date.now(), kind: "spawn", batch: seq, bodyBytes: encodeBody({ id: "worker-66", kind: "heartbeat", role: "worker-heartbeat", budget: {}, restart: false, ts_ms: Date.now() }) },
      { key: randomBytes(32) },
    );
    await writeFile(d.log, Buffer.concat([d.bytes, forged.frame]));
    const v = await cohesix(["log", "verify", d.dir], { env: scratch.env });
    expect(v.exitCode).not.toBe(0);
    expect(v.stderr).toMatch(new RegExp(`record ${seq} at offset ${d.bytes.length}: authentication tag mismatch`));
    await expectServeRefuses(d.dir, new RegExp(`record ${seq} at offset ${d.bytes.length}: authentication tag mismatch`));
  });

  test("the damaged copies never touched the pristine log", async () => {
    const r = await cohesix(["log", "verify", pristine], { env: scratch.env });
    expect(r.exitCode).toBe(0);
  });
});
