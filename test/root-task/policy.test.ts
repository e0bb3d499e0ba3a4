import { describe, expect, test } from "vitest";
import { InvalidError, PermissionError } from "../../nine-door/index.ts";
import {
  ACCESS_OPS,
  authorize,
  isAuthorized,
  normalisePath,
  visibleChildren,
  type AccessOp,
  type PolicyCaller,
} from "../../root-task/index.ts";
import { PATHS, type Path } from "./policy-paths.ts";

const queen: PolicyCaller = { role: "queen", subject: "queen" };
const heartbeat: PolicyCaller = { role: "worker-heartbeat", subject: "worker-1" };
const gpu: PolicyCaller = { role: "worker-gpu", subject: "worker-2", mounts: ["/gpu/GPU-0"] };

const ALL = "walk read write create remove stat";
const SEE = "walk read stat"; // walk to it, stat it, read or list it
const APPEND = "walk read write stat";
const NONE = "";

/**
 * The expected authority matrix: for each role, the allowed ops per path.
 * Anything not listed is refused.
 */
const EXPECTED: Record<"queen" | "heartbeat" | "gpu", Record<Path, string>> = {
  queen: {
    "/": "walk read write stat", // nobody creates or removes the root
    "/proc": SEE,
    "/proc/boot": SEE,
    "/proc/lifecycle/state": SEE,
    "/proc/sessions": SEE,
    "/proc/workers": SEE,
    "/proc/mem": SEE,
    "/queen": ALL,
    "/queen/ctl": ALL,
    "/queen/lifecycle/ctl": ALL,
    "/log": SEE,
    "/log/queen.log": SEE,
    "/worker": ALL,
    "/worker/worker-1": ALL,
    "/worker/worker-1/telemetry": SEE, // appended by its worker only
    "/worker/worker-1/ctl": ALL,
    "/worker/worker-2/telemetry": SEE,
    "/gpu": ALL,
    "/gpu/GPU-0/info": ALL,
    "/gpu/GPU-0/ctl": ALL,
    "/gpu/GPU-0/job": ALL,
    "/gpu/GPU-1/info": ALL,
  },
  heartbeat: {
    "/": SEE,
    "/proc": SEE,
    "/proc/boot": SEE,
    "/proc/lifecycle/state": NONE,
    "/proc/sessions": NONE,
    "/proc/workers": NONE,
    "/proc/mem": NONE,
    "/queen": NONE,
    "/queen/ctl": NONE,
    "/queen/lifecycle/ctl": NONE,
    "/log": SEE,
    "/log/queen.log": SEE,
    "/worker": SEE,
    "/worker/worker-1": SEE,
    "/worker/worker-1/telemetry": APPEND,
    "/worker/worker-1/ctl": SEE,
    "/worker/worker-2/telemetry": NONE,
    "/gpu": NONE,
    "/gpu/GPU-0/info": NONE,
    "/gpu/GPU-0/ctl": NONE,
    "/gpu/GPU-0/job": NONE,
    "/gpu/GPU-1/info": NONE,
  },
  gpu: {
    "/": SEE,
    "/proc": SEE,
    "/proc/boot": SEE,
    "/proc/lifecycle/state": NONE,
    "/proc/sessions": NONE,
    "/proc/workers": NONE,
    "/proc/mem": NONE,
    "/queen": NONE,
    "/queen/ctl": NONE,
    "/queen/lifecycle/ctl": NONE,
    "/log": SEE,
    "/log/queen.log": SEE,
    "/worker": SEE,
    "/worker/worker-1": NONE,
    "/worker/worker-1/telemetry": NONE,
    "/worker/worker-1/ctl": NONE,
    "/worker/worker-2/telemetry": APPEND,
    "/gpu": SEE,
    "/gpu/GPU-0/info": APPEND,
    "/gpu/GPU-0/ctl": APPEND,
    "/gpu/GPU-0/job": APPEND,
    "/gpu/GPU-1/info": NONE,
  },
};

const CALLERS = { queen, heartbeat, gpu } as const;

describe("authority matrix (role × DESIGN §5 path × op)", () => {
  const cells: [string, Path, AccessOp, boolean][] = [];
  for (const [name, table] of Object.entries(EXPECTED)) {
    for (const path of PATHS) {
      const allowed = new Set(table[path].split(" ").filter(Boolean));
      for (const op of ACCESS_OPS) cells.push([name, path, op, allowed.has(op)]);
    }
  }

  test("covers 3 roles × 22 paths × 6 ops", () => {
    expect(cells.length).toBe(3 * 22 * 6);
  });

  test.each(cells)("%s on %s may %s: %s", (name, path, op, allowed) => {
    const caller = CALLERS[name as keyof typeof CALLERS];
    if (allowed) {
      expect(() => authorize(caller, path, op)).not.toThrow();
    } else {
      let err: unknown;
      try {
        authorize(caller, path, op);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(PermissionError);
      expect((err as Error).message).toBe(`permission: ${caller.role} ${caller.subject} may not ${op} ${path}`);
    }
    expect(isAuthorized(caller, path, op)).toBe(allowed);
  });
});

describe("authorize", () => {
  test("refuses a worker's ancestors' siblings and other workers' files", () => {
    expect(() => authorize(heartbeat, "/worker/worker-10/telemetry", "read")).toThrow(PermissionError);
    expect(() => authorize(heartbeat, "/proc/lifecycle", "walk")).toThrow(PermissionError);
  });

  test("any worker-<name> role follows the worker rules", () => {
    const camera: PolicyCaller = { role: "worker-camera", subject: "worker-7" };
    expect(isAuthorized(camera, "/worker/worker-7/telemetry", "write")).toBe(true);
    expect(isAuthorized(camera, "/worker/worker-7/ctl", "write")).toBe(false);
    expect(isAuthorized(camera, "/queen/ctl", "read")).toBe(false);
  });

  test("a GPU worker sees the whole lease subtree, and only /gpu mounts count", () => {
    expect(isAuthorized(gpu, "/gpu/GPU-0", "read")).toBe(true);
    expect(isAuthorized(gpu, "/gpu/GPU-0/status", "read")).toBe(true);
    expect(isAuthorized(gpu, "/gpu/GPU-0/lease", "create")).toBe(false);
    const sneaky: PolicyCaller = { role: "worker-gpu", subject: "worker-4", mounts: ["/queen", "/gpu", "gpu/GPU-1", "/gpu/../queen"] };
    expect(isAuthorized(sneaky, "/queen/ctl", "write")).toBe(false);
    expect(isAuthorized(sneaky, "/gpu/GPU-1/job", "write")).toBe(false);
    expect(isAuthorized(sneaky, "/gpu", "walk")).toBe(false);
  });

  test("bridge and unknown roles may do nothing on the appliance", () => {
    for (const role of ["bridge", "admin", "worker-", "Queen"]) {
      for (const op of ACCESS_OPS) expect(isAuthorized({ role, subject: "x" }, "/", op)).toBe(false);
    }
  });

  test("a worker whose subject is not a plain name sees no worker directory", () => {
    const odd: PolicyCaller = { role: "worker-heartbeat", subject: ".." };
    expect(isAuthorized(odd, "/worker", "walk")).toBe(false);
    expect(isAuthorized(odd, "/proc/boot", "read")).toBe(true);
  });

  test("normalises the path before deciding and reports the normal form", () => {
    expect(() => authorize(heartbeat, "/worker/worker-1/../worker-2/./telemetry", "read")).toThrow(
      "permission: worker-heartbeat worker-1 may not read /worker/worker-2/telemetry",
    );
    expect(() => authorize(heartbeat, "//worker/worker-1//telemetry/", "write")).not.toThrow();
  });
});

describe("normalisePath", () => {
  test.each([
    ["/", "/"],
    ["//", "/"],
    ["/worker//worker-3/./telemetry", "/worker/worker-3/telemetry"],
    ["/proc/boot/", "/proc/boot"],
    ["/a/b/../c", "/a/c"],
    ["/a/..", "/"],
  ])("normalisePath(%j) is %j", (input, output) => {
    expect(normalisePath(input)).toBe(output);
  });

  test.each(["/..", "/proc/../..", "relative/path", "", "/a\0b"])("refuses %j with InvalidError", (input) => {
    expect(() => normalisePath(input)).toThrow(InvalidError);
  });

  test("names the escape", () => {
    expect(() => normalisePath("/proc/../..")).toThrow("invalid: path climbs above the root: /proc/../..");
  });
});

describe("visibleChildren", () => {
  const root = ["gpu", "log", "proc", "queen", "worker"];
  test("the queen sees every entry", () => {
    expect(visibleChildren(queen, "/", root)).toEqual(root);
    expect(visibleChildren(queen, "/worker", ["worker-1", "worker-2"])).toEqual(["worker-1", "worker-2"]);
  });

  test("a heartbeat worker sees only the way to what it may use", () => {
    expect(visibleChildren(heartbeat, "/", root)).toEqual(["log", "proc", "worker"]);
    expect(visibleChildren(heartbeat, "/proc", ["boot", "lifecycle", "mem", "sessions", "workers"])).toEqual(["boot"]);
    expect(visibleChildren(heartbeat, "/worker", ["worker-1", "worker-2", "worker-10"])).toEqual(["worker-1"]);
    expect(visibleChildren(heartbeat, "/worker/worker-1", ["ctl", "telemetry"])).toEqual(["ctl", "telemetry"]);
    expect(visibleChildren(heartbeat, "/log", ["queen.log"])).toEqual(["queen.log"]);
  });

  test("a GPU worker also sees /gpu and its lease only", () => {
    expect(visibleChildren(gpu, "/", root)).toEqual(["gpu", "log", "proc", "worker"]);
    expect(visibleChildren(gpu, "/gpu", ["GPU-0", "GPU-1"])).toEqual(["GPU-0"]);
    expect(visibleChildren(gpu, "/gpu/GPU-0", ["ctl", "info", "job", "lease", "status"])).toEqual(["ctl", "info", "job", "lease", "status"]);
  });

  test("drops names that are not names", () => {
    expect(visibleChildren(queen, "/", ["", ".", "..", "a/b", "ok"])).toEqual(["ok"]);
  });
});
