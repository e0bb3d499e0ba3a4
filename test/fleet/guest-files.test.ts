/**
 * A guest's fleet block baked into its image (docs/fleet.md, "A guest's
 * fleet block"): the appliance part of the initramfs carries the CA, the
 * client certificate and key and the password under /etc/cohesix/fleet/
 * (secrets 0600, left out of the manifest) and the block with those guest
 * paths in /etc/cohesix/config.json; read back with the rootfs cpio reader,
 * the guest's settings from it (and the kernel command line) bring the
 * link online against mosquitto with TLS and a password; a missing baked
 * file is one fleet_problem line.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeAll, describe, expect, test } from "vitest";
import { loadBoard } from "../../boards/index.ts";
import { imageInputsOf } from "../../cli/project.ts";
import { guestFleetCmdline } from "../../cli/vm-fleet.ts";
import { parseProject } from "../../project/index.ts";
import { guestFleetSettings } from "../../root-task/guest-fleet.ts";
import type { FleetSettings } from "../../root-task/index.ts";
import { GUEST_FLEET_FILES, applianceEntries, readCpio, writeCpio, type CpioEntry } from "../../rootfs/index.ts";
import { useAppliances } from "../root-task/fixture.ts";
import { Broker, haveMosquitto, makePasswords, makeTls, type TlsFiles } from "./broker.ts";

const appliances = useAppliances({ prefix: "cohesix-fleet-guest-files-", defaults: { intervalMs: 200, graceMs: 500 } });
const board = loadBoard("aarch64-virt");
const brokers: Broker[] = [];
afterEach(async () => {
  for (const b of brokers.splice(0)) await b.stop();
});

async function until<T>(what: string, check: () => T | undefined | false, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The appliance part of an image built from a project with this fleet block, read back from its cpio. */
async function bakedImage(fleet: Record<string, unknown>, files: Record<string, string>): Promise<Map<string, CpioEntry<Uint8Array>>> {
  const dir = join(appliances.dir, `project-${Date.now()}`);
  await mkdir(dir, { recursive: true });
  for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text);
  const project = parseProject({ board: "aarch64-virt", workers: [], fleet }, { dir, boards: ["aarch64-virt"] });
  const inputs = imageInputsOf(project);
  const entries = await applianceEntries({ board, modulePaths: [], bundle: [], queenPub: new TextEncoder().encode("queen"), ...(inputs.fleet ? { fleet: inputs.fleet } : {}) });
  return new Map(readCpio(writeCpio(entries)).map((e) => [`/${e.path.replace(/^\/+/, "")}`, e]));
}

const text = (e: CpioEntry<Uint8Array> | undefined): string => new TextDecoder().decode((e as { data: Uint8Array }).data);
const modeOf = (e: CpioEntry<Uint8Array> | undefined): number => ((e as { mode?: number }).mode ?? 0) & 0o7777;

/** The baked files copied under `root`, and the guest's settings with their paths moved there. */
async function unpackFleet(image: Map<string, CpioEntry<Uint8Array>>, root: string, params: Record<string, string>): Promise<FleetSettings> {
  for (const [path, e] of image) {
    if (!path.startsWith(`${GUEST_FLEET_FILES.dir}/`) || e.type !== "file") continue;
    await mkdir(join(root, GUEST_FLEET_FILES.dir), { recursive: true });
    await writeFile(join(root, path), e.data);
  }
  const baked = (JSON.parse(text(image.get("/etc/cohesix/config.json"))) as { fleet?: FleetSettings }).fleet;
  const settings = guestFleetSettings(baked, params)!;
  return {
    ...settings,
    ...(settings.ca ? { ca: join(root, settings.ca) } : {}),
    ...(settings.cert ? { cert: join(root, settings.cert) } : {}),
    ...(settings.key ? { key: join(root, settings.key) } : {}),
    ...(settings.passwordFile ? { passwordFile: join(root, settings.passwordFile) } : {}),
  };
}

describe("a guest's fleet block baked into its image", () => {
  let tls: TlsFiles;
  beforeAll(async () => {
    if (!haveMosquitto) throw new Error("mosquitto is not installed: run scripts/setup.sh (apt-get install mosquitto)");
    const certs = join(appliances.dir, "certs");
    await mkdir(certs, { recursive: true });
    tls = await makeTls(certs, "guest");
  });

  test("carries the CA, client certificate, key and password under /etc/cohesix/fleet/, secrets 0600, and the block with guest paths", async () => {
    const image = await bakedImage(
      { url: "mqtts://broker.lan:8883", id: "site-1", username: "site-1", password: "s3cret-pw", ca: "ca.pem", cert: "client.pem", key: "client.key", ackDelayMs: 200 },
      { "ca.pem": "CA PEM\n", "client.pem": "CERT PEM\n", "client.key": "KEY PEM\n" },
    );
    expect(text(image.get("/etc/cohesix/fleet/ca.pem"))).toBe("CA PEM\n");
    expect(text(image.get("/etc/cohesix/fleet/client.pem"))).toBe("CERT PEM\n");
    expect(text(image.get("/etc/cohesix/fleet/client.key"))).toBe("KEY PEM\n");
    expect(text(image.get("/etc/cohesix/fleet/password"))).toBe("s3cret-pw");
    expect(modeOf(image.get("/etc/cohesix/fleet/client.key"))).toBe(0o600);
    expect(modeOf(image.get("/etc/cohesix/fleet/password"))).toBe(0o600);
    expect(modeOf(image.get("/etc/cohesix/fleet/ca.pem"))).toBe(0o644);
    expect(modeOf(image.get("/etc/cohesix/fleet"))).toBe(0o700);
    const config = text(image.get("/etc/cohesix/config.json"));
    expect(JSON.parse(config).fleet).toEqual({
      url: "mqtts://broker.lan:8883",
      id: "site-1",
      username: "site-1",
      ackDelayMs: 200,
      ca: "/etc/cohesix/fleet/ca.pem",
      cert: "/etc/cohesix/fleet/client.pem",
      key: "/etc/cohesix/fleet/client.key",
      passwordFile: "/etc/cohesix/fleet/password",
    });
    expect(config).not.toContain("s3cret-pw");
  });

  test("an image without a fleet block carries no fleet files and no fleet section", async () => {
    const entries = await applianceEntries({ board, modulePaths: [], bundle: [], queenPub: new TextEncoder().encode("queen") });
    expect(entries.some((e) => e.path.startsWith(GUEST_FLEET_FILES.dir))).toBe(false);
    expect(JSON.parse(text(entries.find((e) => e.path === "/etc/cohesix/config.json"))).fleet).toBeUndefined();
    expect(guestFleetSettings(undefined, {})).toBeUndefined();
  });

  test("cohesix boot of an image built from the project passes url and id on the command line, the credentials baked", () => {
    const project = { fleet: { url: "mqtts://127.0.0.1:8883", id: "guest-1", username: "u", password: "p", ca: "/p/ca.pem" } } as never;
    const parsed = { values: {}, positionals: [] };
    expect(guestFleetCmdline(parsed, project, "10.0.2.2", () => {}, { baked: true })).toBe("cohesix.fleet=mqtts://10.0.2.2:8883 cohesix.fleet_id=guest-1");
    expect(() => guestFleetCmdline(parsed, project, "10.0.2.2", () => {})).toThrow(/the fleet block's username, password, ca cannot reach a QEMU guest/);
  });

  test("the kernel command line's url, id and prefix go over the baked block's", () => {
    const baked = { url: "mqtts://broker.lan:8883", id: "site-1", ca: "/etc/cohesix/fleet/ca.pem" };
    expect(guestFleetSettings(baked, {})).toEqual(baked);
    expect(guestFleetSettings(baked, { fleet: "mqtts://10.0.2.2:8883", fleet_id: "guest-1", fleet_prefix: "plant" })).toEqual({
      url: "mqtts://10.0.2.2:8883",
      id: "guest-1",
      prefix: "plant",
      ca: "/etc/cohesix/fleet/ca.pem",
    });
    expect(guestFleetSettings(undefined, { fleet: "mqtt://10.0.2.2:1883" })).toEqual({ url: "mqtt://10.0.2.2:1883" });
  });

  test("the guest's settings from the baked files bring the link online against a broker with TLS and a password", { timeout: 60_000 }, async () => {
    const dir = join(appliances.dir, `broker-${Date.now()}`);
    await mkdir(dir, { recursive: true });
    const b = await Broker.start(dir, { tls: { cert: tls.serverCert, key: tls.serverKey }, passwordFile: await makePasswords(join(dir, "passwd"), { "guest-1": "right-pw" }) });
    brokers.push(b);
    const image = await bakedImage({ url: "mqtts://broker.lan:8883", username: "guest-1", password: "right-pw", ca: tls.caCert, ackDelayMs: 250, maxRecordBytes: 4096 }, {});
    // What `cohesix boot --fleet mqtts://127.0.0.1:PORT --fleet-id guest-1` puts on the command line.
    const settings = await unpackFleet(image, join(dir, "guest-root"), { fleet: b.url, fleet_id: "guest-1" });
    const { app } = await appliances.start({ fleet: settings });
    await until("online over TLS with the baked password", () => app.fleet?.agent?.link.state === "online");
    expect(app.fleet?.problem()).toBeUndefined();
    const queen = await appliances.attachQueen(app);
    expect(await queen.readText("proc/fleet")).toMatch(/^limits outbox_max_bytes=\d+ ack_delay_ms=250 max_record_bytes=4096 /m);
  });

  test("the block's ackDelayMs and maxRecordBytes are bounded by the schema", async () => {
    const dir = join(appliances.dir, `bounds-${Date.now()}`);
    await mkdir(dir, { recursive: true });
    const parse = (ackDelayMs: number) => parseProject({ board: "host", workers: [], fleet: { url: "mqtt://b:1", ackDelayMs } }, { dir, boards: [] });
    expect(parse(0).fleet?.ackDelayMs).toBe(0);
    expect(parse(10_000).fleet?.ackDelayMs).toBe(10_000);
    expect(() => parse(10_001)).toThrow(/fleet\.ackDelayMs/);
    expect(() => parse(-1)).toThrow(/fleet\.ackDelayMs/);
    const cap = (maxRecordBytes: number) => parseProject({ board: "host", workers: [], fleet: { url: "mqtt://b:1", maxRecordBytes } }, { dir, boards: [] });
    expect(cap(1024).fleet?.maxRecordBytes).toBe(1024);
    expect(() => cap(1023)).toThrow(/fleet\.maxRecordBytes/);
    expect(() => cap(65_537)).toThrow(/fleet\.maxRecordBytes/);
  });

  test("a baked file that is missing is one fleet_problem line, and the appliance keeps serving", { timeout: 60_000 }, async () => {
    const image = await bakedImage({ url: "mqtt://127.0.0.1:1", username: "guest-1", password: "pw" }, {});
    const root = join(appliances.dir, `empty-root-${Date.now()}`);
    const settings = guestFleetSettings(JSON.parse(text(image.get("/etc/cohesix/config.json"))).fleet, {})!;
    const { app } = await appliances.start({ fleet: { ...settings, passwordFile: join(root, settings.passwordFile!) } });
    expect(app.fleet?.problem()).toMatch(/^invalid: fleet: cannot read the password file .*\/etc\/cohesix\/fleet\/password: ENOENT/);
    const queen = await appliances.attachQueen(app);
    expect(await queen.readText("proc/lifecycle/state")).toBe("ONLINE\n");
    expect(await queen.readText("proc/boot")).toMatch(/^fleet_problem=invalid: fleet: cannot read the password file/m);
  });
});
