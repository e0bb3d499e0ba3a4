/**
 * The QEMU guest's GPU bridge item (root-task/guest-bridge.ts): its format
 * and refusals, reading it from a firmware config folder (the ticket again
 * at every connection), and GpuMount attaching with a ticket source instead
 * of the bridge key — refused once that ticket has expired.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, describe, expect, it } from "vitest";
import { ensureBridgeKey, mintBridgeTicket, startBridge } from "../../gpu-bridge/index.ts";
import { InvalidError } from "../../nine-door/index.ts";
import { FW_CFG_GPU_BRIDGE, formatGuestBridge, GpuMount, guestGpuBridge, parseGuestBridge, type GpuMountHost } from "../../root-task/index.ts";

const scratch = mkdtempSync(join(tmpdir(), "cohesix-guest-bridge-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const key = new Uint8Array(32).fill(7);
const ticket = mintBridgeTicket(key, { ttlS: 600 });

/** A firmware config folder as the guest kernel shows it, holding `text` as the bridge item. */
function fwCfg(name: string, text: string): { dir: string; file: string } {
  const dir = join(scratch, name);
  const item = join(dir, ...FW_CFG_GPU_BRIDGE.split("/"));
  mkdirSync(item, { recursive: true });
  writeFileSync(join(item, "raw"), text);
  return { dir, file: join(item, "raw") };
}

function hostStub(audit: string[]): GpuMountHost {
  return { audit: (l) => audit.push(l), setDegraded: () => {}, running: () => [], worker: () => undefined, revoke: async () => {} };
}

async function until(check: () => boolean, ms = 10_000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!check() && Date.now() < deadline) await sleep(50);
  return check();
}

describe("guest GPU bridge item", () => {
  it("formatGuestBridge() and parseGuestBridge() round-trip the dial string, ticket and pin", () => {
    const text = formatGuestBridge({ dial: "tcp!10.0.2.2!5650", ticket });
    expect(text.endsWith("\n")).toBe(true);
    expect(parseGuestBridge(text)).toEqual({ dial: "tcp!10.0.2.2!5650", ticket });
    const pin = "AB".repeat(32);
    expect(parseGuestBridge(formatGuestBridge({ dial: "10.0.2.2:5650", ticket, pin }))).toEqual({ dial: "10.0.2.2:5650", ticket, pin });
    // small enough for any firmware config item
    expect(text.length).toBeLessThan(700);
  });

  it("parseGuestBridge() refuses what is not a bridge item, naming the field", () => {
    const cases: [string, RegExp][] = [
      ["not json", /gpu bridge item: not JSON/],
      ["[]", /must be a JSON object/],
      [JSON.stringify({ ticket }), /dial must be a dial string/],
      [JSON.stringify({ dial: "nowhere", ticket }), /dial "nowhere"/],
      [JSON.stringify({ dial: "tcp!10.0.2.2!5650" }), /ticket must be a bridge ticket/],
      [JSON.stringify({ dial: "tcp!10.0.2.2!5650", ticket: "a b" }), /ticket must be a bridge ticket/],
      [JSON.stringify({ dial: "tcp!10.0.2.2!5650", ticket: "x".repeat(600) + ".y" }), /under 512 chars/],
      [JSON.stringify({ dial: "tcp!10.0.2.2!5650", ticket, pin: "zz" }), /pin: /],
      [JSON.stringify({ dial: "tcp!10.0.2.2!5650", ticket, key: "secret" }), /unknown field "key"/],
    ];
    for (const [text, message] of cases) {
      expect(() => parseGuestBridge(text), text).toThrow(InvalidError);
      expect(() => parseGuestBridge(text), text).toThrow(message);
    }
    expect(() => formatGuestBridge({ dial: "unix!", ticket })).toThrow(InvalidError);
  });

  it("guestGpuBridge() is undefined without the item, and reads the ticket again at every call", () => {
    expect(guestGpuBridge({ fwCfgDir: join(scratch, "none") })).toBeUndefined();
    const { dir, file } = fwCfg("item", `${formatGuestBridge({ dial: "tcp!10.0.2.2!5650", ticket })}\0\0`);
    const files = guestGpuBridge({ fwCfgDir: dir })!;
    expect(files.dial).toBe("tcp!10.0.2.2!5650");
    expect(files.key).toBeUndefined();
    expect(files.ticket!()).toBe(ticket);
    const fresh = mintBridgeTicket(key, { ttlS: 900 });
    writeFileSync(file, formatGuestBridge({ dial: "tcp!10.0.2.2!5650", ticket: fresh }));
    expect(files.ticket!()).toBe(fresh);
    const bad = fwCfg("bad", "{}");
    expect(() => guestGpuBridge({ fwCfgDir: bad.dir })).toThrow(/gpu bridge item: dial must be/);
  });
});

describe("GpuMount with a ticket source", () => {
  it("refuses a config with both or neither of the key and a ticket source", () => {
    expect(() => new GpuMount({ dial: "127.0.0.1:1" }, hostStub([]))).toThrow(/either the bridge key or a ticket source/);
    expect(() => new GpuMount({ dial: "127.0.0.1:1", key, ticket: () => ticket }, hostStub([]))).toThrow(InvalidError);
  });

  it("attaches to the bridge with the ticket it is handed, and stays away with an expired one, saying why", async () => {
    const keyPath = join(scratch, "keys", "bridge.key");
    const pair = await ensureBridgeKey(keyPath);
    const bridge = await startBridge({ listen: "127.0.0.1:0", backend: "sim", key: keyPath, log: () => {} });
    const mounts: GpuMount[] = [];
    try {
      const asked: string[] = [];
      const audit: string[] = [];
      const good = new GpuMount(
        {
          dial: bridge.dialString,
          ticket: () => {
            const t = mintBridgeTicket(pair.privateKey, { ttlS: 600 });
            asked.push(t);
            return t;
          },
        },
        hostStub(audit),
      );
      mounts.push(good);
      expect(await until(() => good.connected)).toBe(true);
      expect(asked.length).toBeGreaterThanOrEqual(1);
      expect(good.unavailable()).toBeUndefined();
      expect(audit.some((l) => l.includes("connected"))).toBe(true);

      const expired = mintBridgeTicket(pair.privateKey, { ttlS: 1, now: Date.now() - 3_600_000 });
      const badAudit: string[] = [];
      const stale = new GpuMount({ dial: bridge.dialString, ticket: () => expired, initialDelayMs: 50 }, hostStub(badAudit));
      mounts.push(stale);
      expect(await until(() => badAudit.some((l) => /down: .*expired/.test(l)))).toBe(true);
      expect(stale.connected).toBe(false);
      expect(stale.unavailable()).toMatch(/gpu bridge unavailable: .*(expired|connecting)/);
    } finally {
      for (const m of mounts) m.close();
      await bridge.stop();
    }
  }, 30_000);
});
