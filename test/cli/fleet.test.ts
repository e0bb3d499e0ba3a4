// `cohesix fleet ls` and `cohesix fleet tail` against a real mosquitto with
// TLS (certificates made by openssl here) and password login
// (mosquitto_passwd), with appliances that run the fleet link in this process.
import { execa } from "execa";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { FleetLink, Outbox } from "../../fleet/index.ts";
import { Broker, makePasswords, makeTls, type TlsFiles } from "../fleet/broker.ts";
import { BIN, ROOT, cohesix } from "./helpers.ts";

let dir: string;
let broker: Broker;
let tls: TlsFiles;
let wrongCa: string;
let passwordFile: string;
let wrongPasswordFile: string;
const links: FleetLink[] = [];
const outboxes: Outbox[] = [];

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function appliance(id: string, boot: Record<string, string>, version = "0.1.0"): Promise<{ link: FleetLink; outbox: Outbox }> {
  const outbox = await Outbox.open(join(dir, `outbox-${id}`), { ackDelayMs: 5 });
  const link = new FleetLink({ url: broker.url, id, outbox, ca: tls.ca, username: "app", password: "app-secret", birth: () => ({ version, boot, lifecycle: "ONLINE" }), minBackoffMs: 50, maxBackoffMs: 200 });
  links.push(link);
  outboxes.push(outbox);
  return { link, outbox };
}

function online(link: FleetLink): Promise<void> {
  return until(`${link.state} link online`, () => link.state === "online");
}

const login = () => ["--broker", broker.url, "--ca", tls.caCert, "--username", "ops", "--password-file", passwordFile];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "cohesix-fleet-cli-"));
  await mkdir(join(dir, "broker"));
  tls = await makeTls(dir, "good");
  wrongCa = (await makeTls(dir, "other")).caCert;
  await makePasswords(join(dir, "passwd"), { ops: "ops-secret", app: "app-secret" });
  passwordFile = join(dir, "ops.pw");
  await writeFile(passwordFile, "ops-secret\n");
  wrongPasswordFile = join(dir, "wrong.pw");
  await writeFile(wrongPasswordFile, "guess\n");
  broker = await Broker.start(join(dir, "broker"), { tls: { cert: tls.serverCert, key: tls.serverKey }, passwordFile: join(dir, "passwd") });
}, 60_000);

afterAll(async () => {
  for (const l of links) await l.close();
  for (const o of outboxes) await o.close();
  await broker?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe("cohesix fleet over TLS with a password", () => {
  test("fleet ls lists live and dead appliances with version, lifecycle, last seen and backlog; --select narrows; --json gives the fields", async () => {
    const a1 = await appliance("app-1", { board: "aarch64-virt" });
    const a2 = await appliance("app-2", { board: "rpi4" }, "0.2.0");
    const a3 = await appliance("app-3", { board: "aarch64-virt" });
    for (let i = 0; i < 4; i++) await a2.link.publish({ kind: "audit", line: `before connecting ${i}` });
    for (const a of [a1, a2, a3]) a.link.start();
    for (const a of [a1, a2, a3]) await online(a.link);
    await a3.link.close();

    const ls = await cohesix(["fleet", "ls", ...login()]);
    expect(ls.stderr).toBe("3 appliances, 2 live, 1 dead");
    expect(ls.exitCode).toBe(0);
    const rows = ls.stdout.split("\n").map((l) => l.split(/\s{2,}/));
    expect(rows[0]).toEqual(["ID", "STATE", "VERSION", "LIFECYCLE", "LAST SEEN", "BACKLOG"]);
    expect(rows.slice(1).map((r) => [r[0], r[1], r[2], r[3], r[5]])).toEqual([
      ["app-1", "live", "0.1.0", "ONLINE", "0"],
      ["app-2", "live", "0.2.0", "ONLINE", "4"],
      ["app-3", "dead", "0.1.0", "ONLINE", "0"],
    ]);
    expect(rows[1]![4]).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);

    const selected = await cohesix(["fleet", "ls", ...login(), "--select", "board=aarch64-virt", "--select", "live=true"]);
    expect(selected.stdout.split("\n").slice(1).map((l) => l.split(/\s+/)[0])).toEqual(["app-1"]);

    const json = await cohesix(["fleet", "ls", ...login(), "--json", "--id", "app-3"]);
    expect(JSON.parse(json.stdout)).toEqual([
      expect.objectContaining({ id: "app-3", live: false, version: "0.1.0", lifecycle: "ONLINE", backlog: 0, reason: "link closed", boot: { board: "aarch64-virt" }, lastSeenMs: expect.any(Number), lastSeen: expect.any(String) }),
    ]);
  }, 90_000);

  test("fleet tail prints one appliance's records once each, the ones made while it was away marked [historical]", async () => {
    const { link } = await appliance("app-4", { board: "aarch64-virt" });
    link.start();
    await online(link);
    await link.close(); // retained birth and death: the tail's first two lines
    for (let i = 1; i <= 3; i++) await link.publish({ kind: "audit", line: `offline ${i}` });
    const base = { ...process.env };
    delete base.COHESIX_BROKER;
    const tail = execa("node", [BIN, "fleet", "tail", ...login(), "--id", "app-4", "--count", "8"], { cwd: ROOT, env: base, extendEnv: false, reject: false, timeout: 60_000 });
    const lines: string[] = [];
    createInterface({ input: tail.stdout! }).on("line", (l) => lines.push(l));
    await until("the retained birth and death", () => lines.length >= 2);
    expect(lines[0]).toMatch(/ app-4 0 birth session \d+ version 0\.1\.0 ONLINE backlog 0 \[retained\]$/);
    expect(lines[1]).toMatch(/ app-4 0 death session \d+ link closed \[retained\]$/);

    // The same appliance comes back (a new link on its outbox), forwards its backlog, then goes on live.
    const again = new FleetLink({ url: broker.url, id: "app-4", outbox: outboxes.at(-1)!, ca: tls.ca, username: "app", password: "app-secret", birth: () => ({ version: "0.1.0", boot: {}, lifecycle: "ONLINE" }), minBackoffMs: 50, maxBackoffMs: 200 });
    links.push(again);
    again.start();
    await online(again);
    await again.publish({ kind: "telemetry", worker: "worker-1", data: { tick: 1 } });
    await again.publish({ kind: "telemetry", worker: "worker-1", data: { tick: 2 } });
    const done = await tail;
    expect(done.exitCode).toBe(0);
    expect(lines.slice(2).map((l) => l.replace(/^\S+ /, ""))).toEqual([
      expect.stringMatching(/^app-4 3 birth session \d+ version 0\.1\.0 ONLINE backlog 3$/),
      "app-4 1 audit offline 1 [historical]",
      "app-4 2 audit offline 2 [historical]",
      "app-4 3 audit offline 3 [historical]",
      'app-4 4 telemetry worker-1 {"tick":1}',
      'app-4 5 telemetry worker-1 {"tick":2}',
    ]);
  }, 90_000);

  test("a broker certificate from another CA is one clear error line and exit 1", async () => {
    const r = await cohesix(["fleet", "ls", "--broker", broker.url, "--ca", wrongCa, "--username", "ops", "--password-file", passwordFile]);
    expect(r.exitCode).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(new RegExp(`^permission: fleet: broker ${broker.url.replace(/[.]/g, "\\.")}: its TLS certificate does not verify against the pinned CA \\(--ca\\): [^\\n]+$`));
  }, 30_000);

  test("a wrong password is one clear error line and exit 1", async () => {
    const r = await cohesix(["fleet", "ls", "--broker", broker.url, "--ca", tls.caCert, "--username", "ops", "--password-file", wrongPasswordFile]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/^permission: fleet: broker mqtts:\/\/127\.0\.0\.1:\d+ refused the login: Not authorized: check --username and the password$/);
  }, 30_000);

  test("the broker comes from COHESIX_BROKER when --broker is not given, and its absence is a usage error", async () => {
    const r = await cohesix(["fleet", "ls", "--ca", tls.caCert, "--username", "ops", "--password-file", passwordFile, "--id", "app-1"], { env: { COHESIX_BROKER: broker.url } });
    expect(r.stdout.split("\n").slice(1).map((l) => l.split(/\s+/)[0])).toEqual(["app-1"]);
    const missing = await cohesix(["fleet", "ls"], { env: { COHESIX_BROKER: "" } });
    expect(missing.exitCode).toBe(2);
    expect(missing.stderr).toMatch(/^cohesix fleet ls: --broker is required/);
  }, 30_000);
});
