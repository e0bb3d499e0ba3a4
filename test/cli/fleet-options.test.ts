/**
 * `--fleet URL` / `--fleet-id ID` on serve, boot and up, and the fleet
 * block of cohesix.config.json: what the appliance's link is given, and what
 * a QEMU guest gets on its kernel command line.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import { fleetSettingsOf } from "../../cli/local.ts";
import { guestBrokerUrl, guestFleetCmdline } from "../../cli/vm-fleet.ts";
import { parseProject } from "../../project/index.ts";

const parsed = (values: Record<string, string>) => ({ values, positionals: [] });
const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

describe("fleet options", () => {
  test("--fleet and --fleet-id make the settings, over the project's fleet block", () => {
    expect(fleetSettingsOf(parsed({}), undefined)).toBeUndefined();
    expect(fleetSettingsOf(parsed({ fleet: "mqtt://127.0.0.1:1883", "fleet-id": "app-1" }), undefined)).toEqual({ url: "mqtt://127.0.0.1:1883", id: "app-1" });
    const project = { fleet: { url: "mqtts://broker:8883", id: "site-1", prefix: "plant/a", audit: false } };
    expect(fleetSettingsOf(parsed({ "fleet-id": "app-9" }), project)).toEqual({ url: "mqtts://broker:8883", id: "app-9", prefix: "plant/a", audit: false });
    expect(fleetSettingsOf(parsed({}), project)).toEqual(project.fleet);
  });

  test("a bad URL or id, or --fleet-id alone, is a usage error", () => {
    expect(() => fleetSettingsOf(parsed({ fleet: "http://x" }), undefined)).toThrow(/--fleet http:\/\/x: the broker must be mqtt:\/\/HOST:PORT/);
    expect(() => fleetSettingsOf(parsed({ fleet: "mqtt://x:1", "fleet-id": "a/+" }), undefined)).toThrow(/--fleet-id "a\/\+": must be 1-64/);
    expect(() => fleetSettingsOf(parsed({ "fleet-id": "app-1" }), undefined)).toThrow(/--fleet-id goes with --fleet URL/);
  });

  test("a loopback broker becomes the gateway for a guest, on the kernel command line", () => {
    expect(guestBrokerUrl("mqtt://127.0.0.1:1883", "10.0.2.2")).toEqual({ url: "mqtt://10.0.2.2:1883", rewritten: true });
    expect(guestBrokerUrl("mqtts://localhost:8883", "10.0.2.2")).toEqual({ url: "mqtts://10.0.2.2:8883", rewritten: true });
    expect(guestBrokerUrl("mqtt://broker.lan:1883", "10.0.2.2")).toEqual({ url: "mqtt://broker.lan:1883", rewritten: false });
    const said: string[] = [];
    expect(guestFleetCmdline(parsed({ fleet: "mqtt://127.0.0.1:1883", "fleet-id": "app-1" }), undefined, "10.0.2.2", (l) => said.push(l))).toBe("cohesix.fleet=mqtt://10.0.2.2:1883 cohesix.fleet_id=app-1");
    expect(said).toEqual(["boot: broker mqtt://127.0.0.1:1883 is on this host: the guest dials it as mqtt://10.0.2.2:1883"]);
    expect(guestFleetCmdline(parsed({}), undefined, "10.0.2.2", () => {})).toBe("");
  });

  test("credentials do not go on a guest's command line: refused with what to do", () => {
    const project = { fleet: { url: "mqtt://b:1883", username: "u", password: "p" } } as never;
    expect(() => guestFleetCmdline(parsed({}), project, "10.0.2.2", () => {})).toThrow(/the fleet block's username, password cannot reach a QEMU guest/);
  });

  test("the fleet block of cohesix.config.json is checked and its files made absolute", async () => {
    const dir = await mkdtemp(join(tmpdir(), "cohesix-fleet-config-"));
    dirs.push(dir);
    await writeFile(join(dir, "ca.pem"), "x");
    const p = parseProject({ board: "host", workers: [], fleet: { url: "mqtts://b:8883", id: "app-1", ca: "ca.pem", commandRate: 2 } }, { dir, boards: [] });
    expect(p.fleet).toEqual({ url: "mqtts://b:8883", id: "app-1", ca: join(dir, "ca.pem"), commandRate: 2 });
    expect(() => parseProject({ board: "host", workers: [], fleet: { url: "http://b" } }, { dir, boards: [] })).toThrow(/fleet\.url.*must start with mqtt:\/\/ or mqtts:\/\//);
    expect(() => parseProject({ board: "host", workers: [], fleet: { id: "x" } }, { dir, boards: [] })).toThrow(/url/);
    expect(() => parseProject({ board: "host", workers: [], fleet: { url: "mqtt://b:1", ca: "missing.pem" } }, { dir, boards: [] })).toThrow(/fleet\.ca: no CA file missing\.pem/);
  });
});
