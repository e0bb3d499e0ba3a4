/**
 * One path for every kind of command: kill (on /queen/ctl and on the
 * worker's own ctl), bind, unbind, mount and each lifecycle word stage
 * their records in the control queue and act once they are durable, like
 * spawn and budget. So the queue moves on while a command's fsync is under
 * way (the next command is staged before it is durable), and a failed
 * fsync answers busy:, leaves nothing behind (no process stopped, no bind,
 * no mount, the lifecycle as it was) and the same command works once the
 * log has healed.
 */
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { type Fid } from "../../nine-door/index.ts";
import { type ApplianceState, type RunningAppliance } from "../../root-task/index.ts";
import { withDatasync } from "./commit-log-fs.ts";
import { run, useAppliances, write } from "./fixture.ts";

const appliances = useAppliances({ prefix: "cohesix-pipeline-kinds-", defaults: { intervalMs: 200, graceMs: 500 } });

/** A file layer whose fsyncs can be held at a gate, and made to fail. */
function gatedFs() {
  let gate: Promise<void> | undefined;
  let open = (): void => undefined;
  let held = 0;
  const failing = { on: false };
  const fs = withDatasync(async (real) => {
    if (gate) {
      held++;
      await gate;
    }
    if (failing.on) throw Object.assign(new Error("EIO: i/o error, fdatasync"), { code: "EIO" });
    await real();
  });
  return {
    fs,
    failing,
    /** Later fsyncs wait until `release`. */
    hold(): void {
      held = 0;
      gate = new Promise<void>((r) => (open = r));
    },
    release(): void {
      gate = undefined;
      open();
    },
    held: () => held,
  };
}

async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function exists(root: Fid, path: string): Promise<boolean> {
  try {
    await root.statPath(path);
    return true;
  } catch {
    return false;
  }
}

/** One kind of command: what to set up, the write, and how to tell whether it took effect. */
interface Kind {
  readonly name: string;
  readonly setup: readonly string[];
  readonly path: string;
  readonly text: string;
  /** Whether the command's effect is there (state and namespace agree on it). */
  done(app: RunningAppliance, root: Fid): Promise<boolean>;
  /** The state and namespace as before the command, for a refusal to leave untouched. */
  untouched(app: RunningAppliance, root: Fid, before: ApplianceState): Promise<void>;
}

const SPAWN = '{"spawn":"heartbeat","ticks":100000}';
const BIND = '{"bind":{"from":"/worker/worker-1","to":"/w1"}}';

async function stillRunning(app: RunningAppliance, root: Fid): Promise<void> {
  expect(app.app.state.workers["worker-1"]?.status).toBe("running");
  expect(await root.readText("proc/workers")).toMatch(/worker-1/);
}

async function lifecycleAsBefore(app: RunningAppliance, root: Fid, before: ApplianceState): Promise<void> {
  expect(app.app.state.lifecycle.state).toBe(before.lifecycle.state);
  expect(app.app.state.cordoned).toBe(before.cordoned);
  expect(app.app.snapshot.state.lifecycle).toEqual(before.lifecycle);
  if (before.workers["worker-1"]?.status === "running") await stillRunning(app, root);
}

const killed = async (app: RunningAppliance): Promise<boolean> => app.app.state.workers["worker-1"]?.status === "killed";

const KINDS: readonly Kind[] = [
  { name: "kill on /queen/ctl", setup: [SPAWN], path: "queen/ctl", text: '{"kill":"worker-1"}', done: killed, untouched: (app, root) => stillRunning(app, root) },
  { name: "kill on the worker's ctl", setup: [SPAWN], path: "worker/worker-1/ctl", text: "kill", done: killed, untouched: (app, root) => stillRunning(app, root) },
  {
    name: "bind",
    setup: [SPAWN],
    path: "queen/ctl",
    text: BIND,
    done: async (app, root) => app.app.state.binds.length === 1 && (await exists(root, "w1")),
    untouched: async (app, root) => {
      expect(app.app.state.binds).toEqual([]);
      expect(await exists(root, "w1")).toBe(false);
    },
  },
  {
    name: "unbind",
    setup: [SPAWN, BIND],
    path: "queen/ctl",
    text: '{"unbind":"/w1"}',
    done: async (app, root) => app.app.state.binds.length === 0 && !(await exists(root, "w1")),
    untouched: async (app, root) => {
      expect(app.app.state.binds).toEqual([{ from: "/worker/worker-1", to: "/w1" }]);
      expect(await exists(root, "w1")).toBe(true);
    },
  },
  ...(["cordon", "drain", "quiesce", "reset"] as const).map(
    (word): Kind => ({
      name: `lifecycle ${word}`,
      setup: [SPAWN],
      path: "queen/lifecycle/ctl",
      text: word,
      done: async (app) =>
        word === "cordon" ? app.app.state.cordoned : word === "reset" ? app.app.state.workers["worker-1"]?.status === "exited" : app.app.state.lifecycle.state === "QUIESCED",
      untouched: lifecycleAsBefore,
    }),
  ),
  {
    name: "lifecycle resume",
    setup: [],
    path: "queen/lifecycle/ctl",
    text: "resume",
    done: async (app) => app.app.state.lifecycle.reason.startsWith("resume"),
    untouched: lifecycleAsBefore,
  },
];

/** An appliance on the gated file layer, `kind`'s setup done, and two queen sessions. */
async function ready(kind: { setup: readonly string[] }, extra: Parameters<typeof appliances.start>[0] = {}) {
  const gated = gatedFs();
  const { app } = await appliances.start({ commitLogFs: gated.fs, ...extra });
  const a = await appliances.queenCtl(app);
  const b = await appliances.queenCtl(app);
  for (const command of kind.setup) expect(await run(a.ctl, command)).toMatch(/^\{"ok":true/);
  return { app, a, b, gated };
}

describe("every kind of command takes the staged path", () => {
  for (const kind of KINDS) {
    test(`${kind.name}: the queue moves on while its fsync is under way`, { timeout: 60_000 }, async () => {
      const { app, a, b, gated } = await ready(kind);
      gated.hold();
      const first = write(a.root, kind.path, kind.text);
      let second: Promise<string> | undefined;
      try {
        await until(() => gated.held() > 0, `the fsync of ${kind.name}`);
        // Staged (applied in memory) while the first command's fsync is held.
        second = run(b.ctl, '{"budget":{"ops":4242}}');
        await until(() => app.app.state.defaults.ops === 4242, "the next command to be staged behind the held fsync", 10_000);
      } finally {
        gated.release();
      }
      expect(await first).toMatch(/^\{"ok":true/);
      expect(await second).toMatch(/^\{"ok":true/);
      expect(await kind.done(app, a.root)).toBe(true);
    });

    test(`${kind.name}: a failed fsync answers busy:, leaves nothing behind, and the command works once the log heals`, { timeout: 60_000 }, async () => {
      const { app, a, gated } = await ready(kind);
      const before = app.app.state;
      gated.hold();
      const reply = write(a.root, kind.path, kind.text);
      await until(() => gated.held() > 0, `the fsync of ${kind.name}`);
      gated.failing.on = true;
      gated.release();
      expect(await reply).toMatch(/^Error: (busy|closed): /);
      expect(await kind.done(app, a.root)).toBe(false);
      await kind.untouched(app, a.root, before);
      gated.failing.on = false;
      await until(async () => (await run(a.ctl, '{"budget":{"ops":7}}')).startsWith('{"ok":true'), "the log to heal");
      await kind.untouched(app, a.root, before);
      expect(await write(a.root, kind.path, kind.text)).toMatch(/^\{"ok":true/);
      expect(await kind.done(app, a.root)).toBe(true);
    });
  }

  test("mount: staged like the rest, and a failed fsync mounts nothing", { timeout: 60_000 }, async () => {
    // A configured bridge nobody serves: the mount command only needs one to be configured.
    const gpuBridge = { dial: "tcp!127.0.0.1!1", key: join(appliances.dir, "keys", "queen.key") };
    const { app, a, b, gated } = await ready({ setup: [] }, { gpuBridge });
    const mounted = (): number => app.app.state.mounts.length;
    const mountLines = async (): Promise<number> => (await a.root.readText("log/queen.log")).split("\n").filter((l) => l.includes("mounted gpu bridge at /gpu")).length;
    const MOUNT = '{"mount":{"service":"gpu","at":"/gpu"}}';

    gated.hold();
    const first = run(a.ctl, MOUNT);
    await until(() => gated.held() > 0, "the mount's fsync");
    const second = run(b.ctl, '{"budget":{"ops":4242}}');
    await until(() => app.app.state.defaults.ops === 4242, "the next command to be staged behind the held fsync");
    expect(await mountLines()).toBe(0);
    gated.release();
    expect(await first).toMatch(/^\{"ok":true/);
    expect(await second).toMatch(/^\{"ok":true/);
    expect(mounted()).toBe(1);
    expect(await mountLines()).toBe(1);

    gated.hold();
    const failed = run(a.ctl, MOUNT);
    await until(() => gated.held() > 0, "the mount's fsync");
    gated.failing.on = true;
    gated.release();
    expect(await failed).toMatch(/^Error: (busy|closed): /);
    gated.failing.on = false;
    await until(async () => (await run(a.ctl, '{"budget":{"ops":7}}')).startsWith('{"ok":true'), "the log to heal");
    expect(await mountLines()).toBe(1);
  });
});
