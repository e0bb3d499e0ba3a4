/**
 * A full state disk heals without a restart (issue #11 item 11): on a
 * 4 MiB tmpfs filled to the last byte, a command whose commit fails answers
 * `busy:`, the appliance goes DEGRADED with the reason, every command
 * meanwhile answers `busy:` at once, and once room is made the commit log
 * recovers by itself (reopen, cut back to the last durable record), the
 * appliance is ONLINE again, commands commit, and the log verifies and
 * replays across a restart.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { type Fid } from "../../nine-door/index.ts";
import { showLog, verifyLog, type RunningAppliance } from "../../root-task/index.ts";
import { waitFor } from "../cli/appliance-helpers.ts";
import { fill, useAppliances, write } from "./fixture.ts";

const appliances = useAppliances({ prefix: "cohesix-disk-full-" });
let vol: string;
let mounted = false;

beforeAll(() => {
  vol = join(appliances.dir, "vol");
  mkdirSync(vol);
  execFileSync("mount", ["-t", "tmpfs", "-o", "size=4m", "tmpfs", vol]);
  mounted = true;
});

afterAll(() => {
  if (mounted) execFileSync("umount", ["-l", vol]);
});

async function start(): Promise<{ app: RunningAppliance; root: Fid }> {
  const { app } = await appliances.start({ stateDir: join(vol, "state") });
  return { app, root: await appliances.attachQueen(app) };
}

describe("a state disk that fills up and is freed again", () => {
  test("answers busy: while DEGRADED, and recovers by itself to ONLINE", { timeout: 120_000 }, async () => {
    const { app, root } = await start();
    expect(await write(root, "queen/ctl", '{"budget":{"ops":1}}')).toMatch(/^\{"ok":true/);
    const filler = fill(vol);
    // The log's last page may still take a few records: write until one fails.
    let reply = "";
    for (let i = 2; i <= 500; i++) {
      reply = await write(root, "queen/ctl", `{"budget":{"ops":${i}}}`);
      if (reply.startsWith("Error: ")) break;
    }
    expect(reply).toMatch(/^Error: busy: state disk: commit log cannot write \(.*ENOSPC.*\); retrying/);
    expect((await root.readText("proc/lifecycle/state")).trim()).toBe("DEGRADED");
    expect(await root.readText("proc/lifecycle/reason")).toMatch(/^state disk: commit log cannot write/);
    const committed = app.app.state.defaults.ops!;
    // Every command meanwhile answers busy: and changes nothing.
    expect(await write(root, "queen/ctl", '{"budget":{"ops":999}}')).toMatch(/^Error: busy: state disk/);
    expect(await write(root, "queen/lifecycle/ctl", "cordon")).toMatch(/^Error: busy: state disk/);
    expect(app.app.state.defaults.ops).toBe(committed);
    expect(app.app.state.cordoned).toBe(false);

    rmSync(filler);
    await waitFor("the appliance to be ONLINE again", async () => (await root.readText("proc/lifecycle/state")).trim() === "ONLINE", { timeoutMs: 30_000 });
    expect(await write(root, "queen/ctl", '{"budget":{"ops":4242}}')).toMatch(/^\{"ok":true/);
    expect(await write(root, "queen/lifecycle/ctl", "cordon")).toMatch(/^\{"ok":true/);
    const log = await root.readText("log/queen.log");
    expect(log).toMatch(/lifecycle DEGRADED reason=state disk: commit log cannot write/);
    expect(log).toMatch(/commit log: recovered after \d+ attempt\(s\)/);
    expect(log).toMatch(/lifecycle ONLINE reason=commit log recovered/);

    // The log is whole, and a restart replays it to the same state.
    const before = app.app.state;
    await appliances.stop(app);
    expect((await verifyLog(join(vol, "state"))).ok).toBe(true);
    const { records } = await showLog(join(vol, "state"));
    expect(records.at(-1)?.kind).toBe("lifecycle");
    const again = await start();
    expect(again.app.app.state.defaults).toEqual(before.defaults);
    expect(again.app.app.state.cordoned).toBe(true);
  });
});
