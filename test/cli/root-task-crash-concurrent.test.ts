/**
 * The crash campaign with the control pipeline under concurrency: 64 queen
 * sessions issue commands at once (budgets, and now and then a spawn or a
 * kill) to a real `cohesix serve` process, which is killed with SIGKILL at
 * 20 random moments. Commands overlap in the pipeline, so many are applied
 * in memory but not yet durable at each kill. After every kill and restart:
 * - every acknowledged command is in the commit log;
 * - the log verifies (checksums, chain, HMAC), as `cohesix log verify` does;
 * - no unacknowledged effect is visible: right after the kill, every worker
 *   process still alive has a durable spawn record.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, expect, test } from "vitest";
import { commitLogKey, readPrivateKey, showLog, verifyLog, type CommitRecord } from "../../root-task/index.ts";
import { attachQueen, crashSeed, mulberry32, send, type Acked } from "../crash.ts";
import { pidAlive, signalPid } from "./appliance-helpers.ts";
import { cohesix, makeScratch, serve, type Scratch, type Served } from "./helpers.ts";

const SESSIONS = 64;
const KILLS = 20;
const SEED = crashSeed();

let scratch: Scratch;
let served: Served | undefined;
const stateDir = () => join(scratch.dir, "state");

beforeAll(async () => {
  scratch = await makeScratch();
});

afterAll(async () => {
  if (served && pidAlive(served.pid)) signalPid(served.pid, "SIGKILL");
  await served?.child;
  // Workers of the last life: stop them by their recorded pid.
  for (const { pid } of leftoverWorkers()) signalPid(pid, "SIGKILL");
  await scratch?.remove();
});

/** Worker processes recorded in the run directory that are still alive. */
function leftoverWorkers(): { id: string; pid: number }[] {
  const dir = join(stateDir(), "run");
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => n.endsWith(".pid"));
  } catch {
    return [];
  }
  return names
    .map((n) => ({ id: n.slice(0, -".pid".length), pid: Number(readFileSync(join(dir, n), "utf8").split(" ")[0]) }))
    .filter((w) => Number.isSafeInteger(w.pid) && w.pid > 0 && pidAlive(w.pid));
}

test(`${KILLS} SIGKILLs of serve while ${SESSIONS} sessions send commands lose no acknowledged command and leave no unacknowledged worker (seed from COHESIX_CRASH_SEED)`, { timeout: 600_000 }, async () => {
  const rand = mulberry32(SEED);
  const queenKey = await readPrivateKey(scratch.queenKey);
  const acked: Acked[] = [];
  const spawned: string[] = [];
  let sent = 0;
  let unique = 0;
  let logKey: Uint8Array | undefined;
  let workersChecked = 0;

  const nextCommand = (): { command: string; ack: (reply: Record<string, unknown>) => Acked } => {
    const roll = rand();
    if (roll < 0.01) {
      const command = `{"spawn":"heartbeat","ticks":${1 + Math.floor(rand() * 3)}}`;
      return {
        command,
        ack: (reply) => {
          const id = reply.worker as string;
          spawned.push(id);
          return { command, found: (rs) => rs.some((r) => r.kind === "spawn" && (r.body as { id: string }).id === id) };
        },
      };
    }
    if (roll < 0.015 && spawned.length > 0) {
      const id = spawned[Math.floor(rand() * spawned.length)]!;
      const command = `{"kill":"${id}"}`;
      return { command, ack: () => ({ command, found: (rs) => rs.some((r) => r.kind === "exit" && (r.body as { id: string; status: string }).id === id) }) };
    }
    const ops = 100_000 + unique++;
    const command = `{"budget":{"ops":${ops}}}`;
    return { command, ack: () => ({ command, found: (rs) => rs.some((r) => r.kind === "budget" && (r.body as { budget: { ops?: number } }).budget.ops === ops) }) };
  };

  const check = async (): Promise<readonly CommitRecord[]> => {
    const report = await verifyLog(stateDir(), { key: logKey! });
    expect(report.error).toBeUndefined();
    expect(report.ok).toBe(true);
    const { records } = await showLog(stateDir(), { key: logKey! });
    const missing = acked.filter((a) => !a.found(records)).map((a) => a.command);
    expect(missing, "acknowledged commands missing from the log").toEqual([]);
    return records;
  };

  for (let life = 0; life < KILLS; life++) {
    served = await serve(scratch);
    logKey ??= commitLogKey(await readPrivateKey(join(stateDir(), "boot.key")));
    const sessions = await Promise.all(Array.from({ length: SESSIONS }, () => attachQueen(served!.addr, queenKey)));
    let stop = false;
    const lanes = sessions.map(async ({ ctl }) => {
      while (!stop) {
        const next = nextCommand();
        sent++;
        const reply = await send(ctl, next.command);
        if (reply) acked.push(next.ack(reply));
        else if (!pidAlive(served!.pid)) return;
      }
    });
    // A random moment of this life, with all 64 sessions' commands in the pipeline.
    await new Promise((r) => setTimeout(r, 150 + Math.floor(rand() * 600)));
    signalPid(served.pid, "SIGKILL");
    stop = true;
    await Promise.all(lanes);
    const result = await served.child;
    expect(result.signal).toBe("SIGKILL");
    for (const s of sessions) s.client.close();

    // No effect without a durable record: every worker still running was spawned durably.
    const records = await check();
    const durableSpawns = new Set(records.filter((r) => r.kind === "spawn").map((r) => (r.body as { id: string }).id));
    for (const w of leftoverWorkers()) {
      expect(durableSpawns.has(w.id), `${w.id} (pid ${w.pid}) runs without a durable spawn record`).toBe(true);
      workersChecked++;
    }
  }

  // The last restart: the appliance boots from what the lives left, and the CLI's verify agrees.
  served = await serve(scratch);
  const { client, root } = await attachQueen(served.addr, queenKey);
  // Booting commits too (the ends of workers the last kill left behind, a
  // revived worker's tick budget running out): read the state and the log
  // until no such commit falls between the two reads.
  let snapshot = { seq: -1 };
  let records: readonly CommitRecord[] = [];
  for (let tries = 0; tries < 100; tries++) {
    snapshot = JSON.parse(await root.readText("proc/state")) as { seq: number };
    records = await check();
    if (snapshot.seq === records.length) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  client.close();
  expect(snapshot.seq).toBe(records.length);
  signalPid(served.pid, "SIGTERM");
  await served.child;
  const verify = await cohesix(["log", "verify", stateDir()]);
  expect(verify.exitCode, verify.stderr).toBe(0);

  expect(sent).toBeGreaterThan(acked.length);
  // The campaign is meaningless if few commands got through.
  expect(acked.length).toBeGreaterThan(KILLS * SESSIONS);
  console.log(`concurrent crash campaign seed ${SEED}: ${sent} sent, ${acked.length} acknowledged, ${records.length} records, ${workersChecked} live workers checked`);
});
