/**
 * The crash campaign of issue 3: a stream of 2,000 queen commands to a real
 * `cohesix serve` process, killed with SIGKILL at 50 random points (often
 * with a command in flight). Commands go through an in-test 9P client
 * attached with a queen ticket; a command is acknowledged when its reply was
 * read back. After every restart:
 * - every acknowledged command is in the commit log;
 * - the chain verifies (with the HMAC, from the state directory's boot key);
 * - the state the appliance replayed (`/proc/state`) equals the state
 *   recomputed from the log up to the same record.
 */
import { join } from "node:path";
import { afterAll, beforeAll, expect, test } from "vitest";
import { type Fid } from "../../nine-door/index.ts";
import {
  applyCommit,
  commitLogKey,
  genesis,
  readPrivateKey,
  showLog,
  verifyLog,
  type ApplianceState,
  type Commit,
} from "../../root-task/index.ts";
import { attachQueen, crashSeed, mulberry32, send, type Acked } from "../crash.ts";
import { pidAlive, signalPid, stopServed } from "./appliance-helpers.ts";
import { makeScratch, serve, type Scratch, type Served } from "./helpers.ts";

const COMMANDS = 2000;
const KILLS = 50;
const SEED = crashSeed();

let scratch: Scratch;
let served: Served | undefined;
const stateDir = () => join(scratch.dir, "state");

beforeAll(async () => {
  scratch = await makeScratch();
});

afterAll(async () => {
  await stopServed(served);
  await scratch?.remove();
});

/** Checks the three promises of the campaign against the stopped-and-restarted appliance. */
async function checkAfterRestart(root: Fid, acked: readonly Acked[], logKey: Uint8Array): Promise<void> {
  const snapshot = JSON.parse(await root.readText("proc/state")) as { seq: number; state: ApplianceState };
  const report = await verifyLog(stateDir(), { key: logKey });
  expect(report.error).toBeUndefined();
  expect(report.ok).toBe(true);
  expect(report.hmac).toBe("verified");

  const { records } = await showLog(stateDir(), { key: logKey });
  const missing = acked.filter((a) => !a.found(records)).map((a) => a.command);
  expect(missing, "acknowledged commands missing from the log").toEqual([]);

  // The seq shown is the last record folded into the live state; records after it may be in flight.
  expect(records.length).toBeGreaterThanOrEqual(snapshot.seq);
  const upTo = records.filter((r) => r.seq <= snapshot.seq);
  expect(upTo.map((r) => r.seq)).toEqual(Array.from({ length: snapshot.seq }, (_, i) => i + 1));
  const recomputed = upTo.reduce((s, r) => applyCommit(s, { kind: r.kind, body: r.body } as Commit), genesis);
  expect(snapshot.state).toEqual(JSON.parse(JSON.stringify(recomputed)));
}

test(`${KILLS} SIGKILLs of serve during ${COMMANDS} ctl commands lose no acknowledged command (seed from COHESIX_CRASH_SEED)`, { timeout: 420_000 }, async () => {
  const rand = mulberry32(SEED);
  const queenKey = await readPrivateKey(scratch.queenKey);
  const acked: Acked[] = [];
  const spawned: string[] = [];
  let sent = 0;
  let kills = 0;
  let logKey: Uint8Array | undefined;
  let checks = 0;

  const nextCommand = (): { command: string; ack: (reply: Record<string, unknown>) => Acked } => {
    const roll = rand();
    if (roll < 0.04) {
      const ticks = 1 + Math.floor(rand() * 3);
      const command = `{"spawn":"heartbeat","ticks":${ticks}}`;
      return {
        command,
        ack: (reply) => {
          const id = reply.worker as string;
          spawned.push(id);
          return { command, found: (rs) => rs.some((r) => r.kind === "spawn" && (r.body as { id: string }).id === id) };
        },
      };
    }
    if (roll < 0.07 && spawned.length > 0) {
      const id = spawned[Math.floor(rand() * spawned.length)]!;
      const command = `{"kill":"${id}"}`;
      return {
        command,
        ack: () => ({ command, found: (rs) => rs.some((r) => r.kind === "exit" && (r.body as { id: string; status: string }).id === id && (r.body as { status: string }).status === "killed") }),
      };
    }
    // Each budget command carries a value used once, so its record can be told apart.
    const ops = 10_000 + sent;
    const command = `{"budget":{"ops":${ops}}}`;
    return { command, ack: () => ({ command, found: (rs) => rs.some((r) => r.kind === "budget" && (r.body as { budget: { ops?: number } }).budget.ops === ops) }) };
  };

  while (kills < KILLS || sent < COMMANDS) {
    served = await serve(scratch);
    logKey ??= commitLogKey(await readPrivateKey(join(stateDir(), "boot.key")));
    const { client, root, ctl } = await attachQueen(served.addr, queenKey);
    await checkAfterRestart(root, acked, logKey);
    checks++;

    const killing = kills < KILLS;
    // Each life gets a random share of what is left, so the kills fall at random points of the stream.
    const share = Math.max(0, COMMANDS - sent) / (KILLS - kills + 1);
    const count = killing ? Math.floor(rand() * 2 * share) : COMMANDS - sent;
    for (let i = 0; i < count; i++) {
      const next = nextCommand();
      sent++;
      const reply = await send(ctl, next.command);
      if (reply) acked.push(next.ack(reply));
    }
    if (!killing) {
      client.close();
      break;
    }
    // Kill with one command in flight, a random few hundred microseconds to milliseconds after it left.
    const next = nextCommand();
    sent++;
    const inFlight = send(ctl, next.command);
    await new Promise((r) => setTimeout(r, Math.floor(rand() * 4)));
    signalPid(served.pid, "SIGKILL");
    kills++;
    const reply = await inFlight;
    if (reply) acked.push(next.ack(reply));
    const result = await served.child;
    expect(result.signal).toBe("SIGKILL");
    client.close();
  }

  // One last restart checks what the final life committed.
  if (served && pidAlive(served.pid)) {
    signalPid(served.pid, "SIGKILL");
    await served.child;
  }
  served = await serve(scratch);
  const { client, root } = await attachQueen(served.addr, queenKey);
  await checkAfterRestart(root, acked, logKey!);
  checks++;
  client.close();

  expect(kills).toBe(KILLS);
  expect(sent).toBeGreaterThanOrEqual(COMMANDS);
  expect(checks).toBe(KILLS + 2);
  // Most commands are acknowledged; the campaign is meaningless if none were.
  expect(acked.length).toBeGreaterThan(COMMANDS * 0.8);
});
