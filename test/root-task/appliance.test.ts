/**
 * The authority matrix through a live server: the host-board appliance
 * served on 127.0.0.1 over TCP, attached as the queen, a heartbeat worker
 * and a GPU worker in both dialects. Every role × DESIGN §5 path × operation
 * (walk, read, write, stat) is tried on the wire and must agree with the
 * root task's policy (`isAuthorized`); a few cells are also pinned to
 * explicit expectations, so the test fails if the policy itself goes wrong.
 * Bad tickets are refused at attach, and every refusal is audited in
 * /log/queen.log.
 */
import { Packr } from "msgpackr";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import {
  AppendLog,
  CtlFile,
  Directory,
  NineClient,
  NineError,
  StaticFile,
  dial,
  type Dialect,
  type Fid,
} from "../../nine-door/index.ts";
import {
  decodeTicketUnverified,
  isAuthorized,
  mintTicket,
  serveAppliance,
  writeKeyPair,
  type PolicyCaller,
  type RunningAppliance,
} from "../../root-task/index.ts";
import { PATHS, type Path } from "./policy-paths.ts";

/** The operations a client can try on a path over the wire. */
type WireOp = "walk" | "read" | "write" | "stat";
const OPS: readonly WireOp[] = ["walk", "read", "write", "stat"];

const DIRECTORIES: ReadonlySet<string> = new Set(["/", "/proc", "/queen", "/log", "/worker", "/worker/worker-1", "/gpu"]);

/** A well-formed write for each file, so that an allowed write succeeds. */
function payloadFor(path: string): string {
  if (path === "/queen/ctl") return '{"budget":{"ttl_s":120}}';
  if (path === "/queen/lifecycle/ctl") return "resume";
  if (path.endsWith("/telemetry")) return '{"tick":1,"ts_ms":0}\n';
  if (path.startsWith("/worker/") && path.endsWith("/ctl")) return "kill";
  if (path === "/gpu/GPU-0/ctl") return "RELEASE worker-2 test";
  if (path === "/gpu/GPU-0/job") return '{"job":"j1"}\n';
  return "x";
}

const ROLES = {
  queen: { caller: { role: "queen", subject: "queen" }, uname: "queen" },
  heartbeat: { caller: { role: "worker-heartbeat", subject: "worker-1" }, uname: "worker-heartbeat:worker-1" },
  gpu: { caller: { role: "worker-gpu", subject: "worker-2", mounts: ["/gpu/GPU-0"] }, uname: "worker-gpu:worker-2" },
} as const satisfies Record<string, { caller: PolicyCaller; uname: string }>;
type RoleName = keyof typeof ROLES;

let dir: string;
let running: RunningAppliance;
let queenKey: Uint8Array;
const tickets = {} as Record<RoleName, string>;

/** Worker directories and a fake GPU tree: workers and the GPU bridge come in later issues. */
function populate(app: RunningAppliance["app"]): void {
  for (const id of ["worker-1", "worker-2"]) {
    app.workers.add(
      new Directory(id, {
        children: [new AppendLog("telemetry", { writable: true }), new CtlFile("ctl", (cmd) => `ok ${cmd}`)],
      }),
    );
  }
  const info = (id: string) => JSON.stringify({ id, name: "Fake GPU", uuid: `GPU-${id}`, memory_mb: 1024, sm_count: 8, driver_version: "0" });
  app.gpu.add(
    new Directory("GPU-0", {
      children: [
        new StaticFile("info", `${info("GPU-0")}\n`, { writable: true }),
        new CtlFile("ctl", (cmd) => `ok ${cmd}`),
        new AppendLog("lease", { writable: true }),
        new AppendLog("job", { writable: true }),
        new AppendLog("status", { writable: true }),
      ],
    }),
  );
  app.gpu.add(new Directory("GPU-1", { children: [new StaticFile("info", `${info("GPU-1")}\n`, { writable: true })] }));
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "cohesix-appliance-"));
  const queen = await writeKeyPair(join(dir, "keys"), { name: "queen" });
  queenKey = queen.privateKey;
  running = await serveAppliance({ board: "host", listen: "127.0.0.1:0", stateDir: join(dir, "state"), queenPub: queen.publicPath });
  populate(running.app);
  tickets.queen = mintTicket({ role: "queen", sub: "queen" }, queenKey);
  tickets.heartbeat = mintTicket({ role: "worker-heartbeat", sub: "worker-1" }, running.app.bootKey);
  tickets.gpu = mintTicket({ role: "worker-gpu", sub: "worker-2", mounts: ["/gpu/GPU-0"] }, running.app.bootKey);
});

afterAll(async () => {
  await running?.stop("test done");
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Dials the appliance and attaches; rejects with the server's error. */
async function attach(dialect: Dialect, uname: string, aname: string): Promise<{ client: NineClient; root: Fid }> {
  const client = await NineClient.connect(await dial(running.dialString), { dialect });
  try {
    return { client, root: await client.attach({ uname, aname }) };
  } catch (err) {
    client.close();
    throw err;
  }
}

/** What the wire answered to one attempt. */
type Outcome =
  | { readonly ok: true }
  | { readonly ok: false; readonly cls: string; readonly detail: string; readonly reachedParent: boolean };

function failure(err: unknown, reachedParent: boolean): Outcome {
  if (!(err instanceof NineError)) throw err;
  return { ok: false, cls: err.errorClass, detail: err.message, reachedParent };
}

/**
 * Tries `op` on `path`: walks to the parent, then the last name alone (so a
 * refusal of that name comes back as an error rather than a short walk),
 * then reads, writes or stats. Clunks what it walked.
 */
async function attempt(root: Fid, path: string, op: WireOp): Promise<Outcome> {
  const names = path.split("/").filter(Boolean);
  let parent: Fid;
  try {
    parent = await root.walk(names.slice(0, -1));
  } catch (err) {
    return failure(err, false);
  }
  let f: Fid | undefined;
  try {
    f = await parent.walk(names.slice(-1));
    if (op === "read") {
      if (f.isDir) await f.readdir();
      else await (await f.open("r")).read(0);
    } else if (op === "write") {
      await (await f.open("w")).write(payloadFor(path));
    } else if (op === "stat") {
      await f.stat();
    }
    return { ok: true };
  } catch (err) {
    return failure(err, true);
  } finally {
    await f?.clunk().catch(() => {});
    await parent.clunk().catch(() => {});
  }
}

/** Opening a directory for writing is refused for everyone (`invalid: … is a directory`, EISDIR in .L). */
function isDirectoryWrite(path: string, op: WireOp): boolean {
  return op === "write" && DIRECTORIES.has(path);
}

/** Whether the wire granted the operation. */
function wireAllows(outcome: Outcome): boolean {
  return outcome.ok;
}

const cells: [RoleName, Path, WireOp][] = [];
for (const role of Object.keys(ROLES) as RoleName[]) for (const path of PATHS) for (const op of OPS) cells.push([role, path, op]);

/** Cells pinned to what DESIGN §4/§5 say, independent of the policy code. */
const PINNED: [RoleName, Path, WireOp, boolean][] = [
  ["queen", "/queen/ctl", "write", true],
  ["queen", "/proc/boot", "read", true],
  ["queen", "/proc/boot", "write", false],
  ["queen", "/log/queen.log", "write", false],
  ["queen", "/worker/worker-1/telemetry", "read", true],
  ["queen", "/worker/worker-1/telemetry", "write", false],
  ["queen", "/worker/worker-1/ctl", "write", true],
  ["queen", "/gpu/GPU-1/info", "read", true],
  ["heartbeat", "/proc/boot", "read", true],
  ["heartbeat", "/log/queen.log", "read", true],
  ["heartbeat", "/log/queen.log", "write", false],
  ["heartbeat", "/worker/worker-1/telemetry", "write", true],
  ["heartbeat", "/worker/worker-1/ctl", "write", false],
  ["heartbeat", "/worker/worker-2/telemetry", "read", false],
  ["heartbeat", "/queen/ctl", "walk", false],
  ["heartbeat", "/queen/ctl", "write", false],
  ["heartbeat", "/proc/lifecycle/state", "stat", false],
  ["heartbeat", "/proc/sessions", "read", false],
  ["heartbeat", "/gpu", "walk", false],
  ["gpu", "/gpu/GPU-0/job", "write", true],
  ["gpu", "/gpu/GPU-0/info", "read", true],
  ["gpu", "/gpu/GPU-1/info", "walk", false],
  ["gpu", "/worker/worker-2/telemetry", "write", true],
  ["gpu", "/worker/worker-1/telemetry", "stat", false],
  ["gpu", "/queen/lifecycle/ctl", "write", false],
];

describe.each(["9P2000", "9P2000.L"] as const)("over %s", (dialect) => {
  const roots = {} as Record<RoleName, Fid>;
  const clients: NineClient[] = [];

  beforeAll(async () => {
    for (const role of Object.keys(ROLES) as RoleName[]) {
      const { client, root } = await attach(dialect, ROLES[role].uname, tickets[role]);
      clients.push(client);
      roots[role] = root;
    }
  });

  afterAll(() => {
    for (const c of clients) c.close();
  });

  const queenLog = () => roots.queen.readText("log/queen.log");

  describe("the wire agrees with the policy on every role × path × operation", () => {
    test("covers 3 roles × 22 paths × 4 operations", () => {
      expect(cells).toHaveLength(3 * 22 * 4);
    });

    test.each(cells)("%s on %s may %s as policy says", async (role, path, op) => {
      const { caller } = ROLES[role];
      const allowed = isAuthorized(caller, path, op);
      const outcome = await attempt(roots[role], path, op);
      if (isDirectoryWrite(path, op)) {
        // Refused for everyone (EISDIR), so it neither grants nor denies on
        // policy's behalf; a caller the policy admits must not read "permission".
        expect(outcome.ok).toBe(false);
        if (allowed) expect(outcome).not.toMatchObject({ cls: "permission" });
        return;
      }
      expect(wireAllows(outcome), JSON.stringify(outcome)).toBe(allowed);
      if (outcome.ok) return;
      if (outcome.reachedParent) {
        // The name itself was refused: a permission error naming the path.
        expect(outcome.cls).toBe("permission");
      } else {
        // Stopped earlier: the policy must refuse a walk to some ancestor.
        const names = path.split("/").filter(Boolean);
        const ancestors = names.slice(0, -1).map((_, i) => `/${names.slice(0, i + 1).join("/")}`);
        expect(ancestors.some((a) => !isAuthorized(caller, a, "walk"))).toBe(true);
      }
    });

    test.each(PINNED)("%s on %s may %s: %s (pinned)", async (role, path, op, expected) => {
      expect(wireAllows(await attempt(roots[role], path, op))).toBe(expected);
    });

    test("a refused walk is audited with role, subject, request and path", async () => {
      await attempt(roots.heartbeat, "/queen/ctl", "walk");
      expect(await queenLog()).toContain("refused worker-heartbeat worker-1 Twalk /queen: permission: worker-heartbeat worker-1 may not walk /queen");
    });

    test("a refused open for writing is audited", async () => {
      await attempt(roots.queen, "/proc/boot", "write");
      expect(await queenLog()).toMatch(/refused queen queen T(l)?open \/proc\/boot: permission: queen queen may not write \/proc\/boot/);
    });
  });

  describe("directory listings hide what a worker may not walk", () => {
    const listing = async (role: RoleName, path: string) => (await roots[role].list(path)).map((e) => e.name).sort();

    test("the heartbeat worker sees log, proc and worker at the root", async () => {
      expect(await listing("heartbeat", "")).toEqual(["log", "proc", "worker"]);
    });

    test("the heartbeat worker sees only /proc/boot and its own worker directory", async () => {
      expect(await listing("heartbeat", "proc")).toEqual(["boot"]);
      expect(await listing("heartbeat", "worker")).toEqual(["worker-1"]);
      expect(await listing("heartbeat", "worker/worker-1")).toEqual(["ctl", "telemetry"]);
      expect(await listing("heartbeat", "log")).toEqual(["queen.log"]);
    });

    test("the GPU worker also sees /gpu, with only its lease", async () => {
      expect(await listing("gpu", "")).toEqual(["gpu", "log", "proc", "worker"]);
      expect(await listing("gpu", "gpu")).toEqual(["GPU-0"]);
      expect(await listing("gpu", "worker")).toEqual(["worker-2"]);
    });

    test("the queen sees everything", async () => {
      expect(await listing("queen", "")).toEqual(["gpu", "log", "proc", "queen", "worker"]);
      expect(await listing("queen", "worker")).toEqual(["worker-1", "worker-2"]);
      expect(await listing("queen", "gpu")).toEqual(["GPU-0", "GPU-1"]);
    });
  });

  describe("attach refuses bad tickets, and audits each refusal", () => {
    const packr = new Packr({ useRecords: false, variableMapSize: true });
    const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString("base64url");

    /** Claims rewritten to the queen's, keeping a worker ticket's signature. */
    const forged = () => {
      const real = tickets.heartbeat;
      const t = decodeTicketUnverified(real);
      const payload = packr.pack({ v: t.v, role: "queen", sub: "queen", iat: t.iat, exp: t.exp, nonce: t.nonce });
      return `${b64(payload)}.${real.split(".")[1]}`;
    };

    const cases: [string, () => string, string, RegExp][] = [
      ["a forged ticket (queen claims, a worker's signature)", forged, "queen", /ticket signature does not verify/],
      ["a tampered ticket (one payload character changed)", () => tamper(tickets.queen), "queen", /permission: /],
      ["an expired ticket", () => mintTicket({ role: "queen", sub: "queen" }, queenKey, { now: Date.now() - 3 * 3600_000, ttlS: 60 }), "queen", /ticket expired at/],
      ["a queen ticket signed with the boot key (wrong key)", () => mintTicket({ role: "queen", sub: "queen" }, running.app.bootKey), "queen", /ticket signature does not verify/],
      ["a worker ticket signed with the queen key (wrong key)", () => mintTicket({ role: "worker-heartbeat", sub: "worker-1" }, queenKey), "worker-heartbeat:worker-1", /ticket signature does not verify/],
      ["a truncated ticket", () => tickets.queen.slice(0, -10), "queen", /permission: /],
      ["a ticket cut before its signature", () => tickets.queen.slice(0, tickets.queen.indexOf(".")), "queen", /malformed ticket/],
      ["an empty aname", () => "", "queen", /no ticket/],
      ["a worker's ticket with a uname naming another worker", () => tickets.heartbeat, "worker-heartbeat:worker-9", /uname "worker-heartbeat:worker-9" does not match the ticket/],
      ["a worker's ticket with the uname queen", () => tickets.heartbeat, "queen", /uname "queen" does not match the ticket/],
    ];

    test.each(cases)("refuses %s", async (_what, token, uname, reason) => {
      const before = await queenLog();
      const err = await attach(dialect, uname, token()).then(
        ({ client }) => {
          client.close();
          return undefined;
        },
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(NineError);
      expect((err as NineError).errorClass).toBe("permission");
      const added = (await queenLog()).slice(before.length);
      const line = added.split("\n").find((l) => / refused peer tcp!127\.0\.0\.1!\d+ Tattach: permission: /.test(l));
      expect(line, added).toBeDefined();
      expect(line).toMatch(reason);
    });

    test("admits a stock client's uname (a user name) with a valid ticket", async () => {
      const { client, root } = await attach(dialect, "root", tickets.queen);
      try {
        expect(await root.readText("proc/lifecycle/state")).toBe("ONLINE\n");
      } finally {
        client.close();
      }
    });
  });
});

/** Changes one character in the middle of the payload part. */
function tamper(token: string): string {
  const i = Math.floor(token.indexOf(".") / 2);
  const c = token[i] === "A" ? "B" : "A";
  return token.slice(0, i) + c + token.slice(i + 1);
}
