import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { CONFIG_FILE, configSchema, loadProject, parseProject, readSchema, validate } from "../../project/index.ts";

let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "cohesix-config-"));
  mkdirSync(join(dir, "workers"));
  writeFileSync(join(dir, "workers", "camera.ts"), "export {};\n");
  writeFileSync(join(dir, "workers", "sensor.ts"), "export {};\n");
  writeFileSync(join(dir, "settings.json"), "{}\n");
  writeFileSync(join(dir, "queen.pub"), "key\n");
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const good = () => ({
  board: "aarch64-virt",
  workers: [
    { name: "camera", entry: "workers/camera.ts", role: "worker", budget: { ticks: 100, ttl_s: 60 }, restart: "always" },
    { name: "sensor", entry: "workers/sensor.ts" },
  ],
  files: [{ src: "settings.json", dest: "/etc/app/settings.json" }],
  queenPub: "queen.pub",
  nineDoor: { port: 5700, policy: "signed-ctl" },
});

const parse = (config: unknown) => parseProject(config, { dir, boards: ["aarch64-virt"] });

describe("cohesix.config.json", () => {
  test("a good config loads with absolute paths, ticket roles, defaults and restart policies", () => {
    const p = parse(good());
    expect(p.board).toBe("aarch64-virt");
    expect(p.workers[0]).toEqual({ name: "camera", entry: join(dir, "workers/camera.ts"), role: "worker", ticketRole: "worker-camera", budget: { ticks: 100, ttl_s: 60 }, restart: true });
    expect(p.workers[1]).toMatchObject({ name: "sensor", role: "worker", budget: {}, restart: false });
    expect(p.files).toEqual([{ src: join(dir, "settings.json"), dest: "/etc/app/settings.json" }]);
    expect(p.queenPub).toBe(join(dir, "queen.pub"));
    expect(p.nineDoor).toEqual({ host: "127.0.0.1", port: 5700, policy: "signed-ctl" });
  });

  test("a gpu worker's tickets name the worker-gpu role", () => {
    const c = good();
    c.workers[1] = { ...c.workers[1]!, role: "gpu" } as (typeof c.workers)[number];
    expect(parse(c).workers[1]!.ticketRole).toBe("worker-gpu");
  });

  test("a worker marked required and the try boot's health check load; the health worker must be one of the project's", () => {
    const c = { ...good(), health: { windowS: 5, deadlineS: 60, worker: "sensor" } };
    (c.workers[0] as Record<string, unknown>).required = true;
    const p = parse(c);
    expect(p.workers[0]!.required).toBe(true);
    expect(p.workers[1]!.required).toBeUndefined();
    expect(p.health).toEqual({ windowS: 5, deadlineS: 60, worker: "sensor" });
    expect(parse(good()).health).toBeUndefined();
    expect(() => parse({ ...good(), health: { worker: "ghost" } })).toThrow(/^invalid: cohesix\.config\.json: health\.worker: no worker "ghost" in workers \(known: camera, sensor\)$/);
    expect(() => parse({ ...good(), health: { deadlineS: 0 } })).toThrow(/^invalid: cohesix\.config\.json: health\.deadlineS: /);
  });

  test("the host board needs no board folder", () => {
    expect(parse({ board: "host", workers: [] }).board).toBe("host");
  });

  const bad: Array<[string, (c: ReturnType<typeof good>) => unknown, RegExp]> = [
    ["an unknown top-level field", (c) => ({ ...c, colour: "red" }), /^invalid: cohesix\.config\.json: colour: unknown field \(known: \$schema, board, files, fleet, health, nineDoor, queenPub, releaseKey, workers\)$/],
    ["an unknown worker field", (c) => ((c.workers[1] as Record<string, unknown>).colour = 1, c), /^invalid: cohesix\.config\.json: workers\[1\]\.colour: unknown field \(known: budget, entry, name, required, restart, role\)$/],
    ["a missing entry file", (c) => ((c.workers[1]!.entry = "workers/nope.ts"), c), /^not found: cohesix\.config\.json: workers\[1\]\.entry: no file workers\/nope\.ts in /],
    ["a missing extra file", (c) => ((c.files[0]!.src = "nope.json"), c), /^not found: cohesix\.config\.json: files\[0\]\.src: no file nope\.json in /],
    ["a missing queen key", (c) => ({ ...c, queenPub: "keys/queen.pub" }), /^not found: cohesix\.config\.json: queenPub: no key file keys\/queen\.pub in /],
    ["a duplicate worker name", (c) => ((c.workers[1]!.name = "camera"), c), /^invalid: cohesix\.config\.json: workers\[1\]\.name: duplicate worker name "camera" \(also workers\[0\]\.name\)$/],
    ["a zero tick budget", (c) => ((c.workers[0]!.budget = { ticks: 0, ttl_s: 60 }), c), /^invalid: cohesix\.config\.json: workers\[0\]\.budget\.ticks: must be a positive integer, got 0$/],
    ["a fractional ops budget", (c) => ((c.workers[0]!.budget = { ops: 1.5 } as never), c), /^invalid: cohesix\.config\.json: workers\[0\]\.budget\.ops: must be a positive integer, got 1\.5$/],
    ["a budget field that does not exist", (c) => ((c.workers[0]!.budget = { cpu: 3 } as never), c), /^invalid: cohesix\.config\.json: workers\[0\]\.budget\.cpu: unknown field \(known: ops, ticks, ttl_s\)$/],
    ["a bad role", (c) => ((c.workers[0]!.role = "admin"), c), /^invalid: cohesix\.config\.json: workers\[0\]\.role: must be one of "worker", "gpu", got "admin"$/],
    ["a bad restart policy", (c) => ((c.workers[0]!.restart = "sometimes"), c), /^invalid: cohesix\.config\.json: workers\[0\]\.restart: must be one of "never", "always", got "sometimes"$/],
    ["a bad worker name", (c) => ((c.workers[0]!.name = "Camera"), c), /^invalid: cohesix\.config\.json: workers\[0\]\.name: must be a lowercase name/],
    ["a built-in worker's name", (c) => ((c.workers[0]!.name = "heartbeat"), c), /^invalid: cohesix\.config\.json: workers\[0\]\.name: "heartbeat" is a built-in worker/],
    ["an entry that is not a module", (c) => ((c.workers[0]!.entry = "workers/camera.py"), c), /^invalid: cohesix\.config\.json: workers\[0\]\.entry: must be a \.ts, \.mts, \.js or \.mjs file/],
    ["a missing entry field", (c) => (delete (c.workers[0] as Partial<(typeof c.workers)[0]>).entry, c), /^invalid: cohesix\.config\.json: workers\[0\]\.entry: is required$/],
    ["a missing board", (c) => (delete (c as Partial<typeof c>).board, c), /^invalid: cohesix\.config\.json: board: is required$/],
    ["an unknown board", (c) => ({ ...c, board: "rpi9" }), /^invalid: cohesix\.config\.json: board: no board "rpi9" \(known: aarch64-virt, host\)$/],
    ["workers that are not a list", (c) => ({ ...c, workers: { camera: {} } }), /^invalid: cohesix\.config\.json: workers: must be an array, got an object$/],
    ["a relative guest path", (c) => ((c.files[0]!.dest = "etc/app"), c), /^invalid: cohesix\.config\.json: files\[0\]\.dest: must be an absolute guest path/],
    ["a port out of range", (c) => ({ ...c, nineDoor: { port: 70000 } }), /^invalid: cohesix\.config\.json: nineDoor\.port: must be an integer from 0 to 65535, got 70000$/],
    ["a bad policy", (c) => ({ ...c, nineDoor: { policy: "closed" } }), /^invalid: cohesix\.config\.json: nineDoor\.policy: must be one of "open", "signed-ctl", got "closed"$/],
    ["a config that is not an object", () => [1, 2], /^invalid: cohesix\.config\.json: \(top level\): must be an object, got an array$/],
  ];
  for (const [what, edit, error] of bad) {
    test(`${what} is refused with an error naming the field`, () => {
      expect(() => parse(edit(good()))).toThrow(error);
    });
  }

  test("loadProject refuses a folder without a config and says how to make one", () => {
    const empty = mkdtempSync(join(tmpdir(), "cohesix-noconfig-"));
    try {
      expect(() => loadProject(empty)).toThrow(/^not found: no cohesix\.config\.json in .*cohesix new DIR/);
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });

  test("loadProject refuses a config that is not JSON", () => {
    const p = mkdtempSync(join(tmpdir(), "cohesix-badjson-"));
    try {
      writeFileSync(join(p, CONFIG_FILE), "{ board: ");
      expect(() => loadProject(p)).toThrow(/^invalid: cohesix\.config\.json: not valid JSON: /);
    } finally {
      rmSync(p, { recursive: true, force: true });
    }
  });
});

describe("the schema checker", () => {
  test("the shipped schema uses only keywords the checker understands", () => {
    expect(configSchema().required).toEqual(["board", "workers"]);
  });

  test("a schema keyword the checker does not know is refused, naming where", () => {
    expect(() => readSchema({ type: "object", properties: { a: { type: "string", format: "email" } } })).toThrow(/^invalid: schema #\/properties\/a: keyword "format" is not supported/);
  });

  test("errors name nested array paths", () => {
    const schema = readSchema({ type: "object", properties: { xs: { type: "array", items: { type: "object", properties: { n: { type: "integer", minimum: 0 } } } } } });
    expect(() => validate({ xs: [{ n: 1 }, { n: -1 }] }, schema, "f.json")).toThrow("invalid: f.json: xs[1].n: must be a non-negative integer, got -1");
  });
});
