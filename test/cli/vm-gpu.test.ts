/**
 * `cohesix boot|up --gpu-bridge DIAL` on the host side (cli/vm-gpu.ts):
 * the guest's dial string, the bridge ticket minted with the default or a
 * named bridge key, the 0600 firmware config file QEMU reads, and every
 * bad input refused as a usage error. (The guest side, end to end:
 * test/qemu/gpu.e2e.test.ts.)
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { UsageError, parse } from "../../cli/args.ts";
import { main } from "../../cli/main.ts";
import { GPU_BRIDGE_OPTIONS, GUEST_BRIDGE_TTL_S, guestDial, prepareGuestBridge } from "../../cli/vm-gpu.ts";
import { ensureBridgeKey } from "../../gpu-bridge/index.ts";
import { FW_CFG_GPU_BRIDGE, parseGuestBridge, verifyTicket } from "../../root-task/index.ts";

const scratch = mkdtempSync(join(tmpdir(), "cohesix-vm-gpu-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const env = { XDG_CONFIG_HOME: join(scratch, "config") };
const defaultKey = join(scratch, "config", "cohesix", "bridge.key");

async function prepare(argv: string[], runDir = join(scratch, "run"), modules: readonly string[] = ["virtio_net", "qemu_fw_cfg"]) {
  const err: string[] = [];
  const item = await prepareGuestBridge({ parsed: parse(argv, GPU_BRIDGE_OPTIONS), gateway: "10.0.2.2", modules, runDir, env, err: (t) => err.push(t) });
  return { item, err: err.join("") };
}

describe("boot --gpu-bridge (host side)", () => {
  it("guestDial() shows a bridge on this host to the guest at the gateway, keeps other hosts, refuses Unix sockets", () => {
    expect(guestDial("127.0.0.1:5650", "10.0.2.2")).toEqual({ dial: "tcp!10.0.2.2!5650", rewritten: true });
    expect(guestDial("tcp!localhost!5650", "10.0.2.2")).toEqual({ dial: "tcp!10.0.2.2!5650", rewritten: true });
    expect(guestDial("tls!127.0.0.1!5650", "10.0.2.2")).toEqual({ dial: "tls!10.0.2.2!5650", rewritten: true });
    expect(guestDial("tcp!10.0.2.2!5650", "10.0.2.2")).toEqual({ dial: "tcp!10.0.2.2!5650", rewritten: false });
    expect(guestDial("192.168.1.20:5650", "10.0.2.2")).toEqual({ dial: "tcp!192.168.1.20!5650", rewritten: false });
    expect(() => guestDial("unix!/run/bridge.sock", "10.0.2.2")).toThrow(/a guest cannot reach a Unix socket on the host/);
    expect(() => guestDial("nowhere", "10.0.2.2")).toThrow(UsageError);
  });

  it("without --gpu-bridge there is no item, and its companions alone are usage errors", async () => {
    expect((await prepare([])).item).toBeUndefined();
    for (const argv of [["--gpu-bridge-key", "k"], ["--gpu-bridge-pin", "ab"], ["--gpu-bridge-ttl", "60"]]) {
      await expect(prepare(argv)).rejects.toThrow(/go with --gpu-bridge DIAL/);
    }
  });

  it("refuses a missing bridge key, saying how to make one, and a bad ttl", async () => {
    await expect(prepare(["--gpu-bridge", "127.0.0.1:5650"])).rejects.toThrow(new RegExp(`bridge key ${defaultKey} does not exist: start \`cohesix gpu-bridge\` once`));
    await ensureBridgeKey(defaultKey);
    for (const ttl of ["0", "-5", "1.5", "soon"]) await expect(prepare(["--gpu-bridge", "127.0.0.1:5650", `--gpu-bridge-ttl=${ttl}`])).rejects.toThrow(/--gpu-bridge-ttl must be a whole number/);
  });

  it("mints a bridge ticket with the default key and writes it, with the guest's dial string, to a 0600 file for QEMU's fw_cfg", async () => {
    const { publicKey } = await ensureBridgeKey(defaultKey);
    const { item, err } = await prepare(["--gpu-bridge", "127.0.0.1:5650"]);
    expect(err).toContain("gpu bridge 127.0.0.1:5650 is on this host: the guest dials it as tcp!10.0.2.2!5650");
    expect(err).not.toContain("warning");
    expect(item!.fwCfg.name).toBe(FW_CFG_GPU_BRIDGE);
    expect(item!.dial).toBe("tcp!10.0.2.2!5650");
    expect(statSync(item!.fwCfg.file).mode & 0o777).toBe(0o600);
    const content = parseGuestBridge(readFileSync(item!.fwCfg.file, "utf8"));
    expect(content.dial).toBe("tcp!10.0.2.2!5650");
    expect(content.pin).toBeUndefined();
    const t = verifyTicket(content.ticket, { keys: [publicKey] });
    expect(t).toMatchObject({ role: "bridge", sub: "appliance" });
    expect(t.exp - t.iat).toBe(GUEST_BRIDGE_TTL_S);
    await item!.remove();
    expect(existsSync(item!.fwCfg.file)).toBe(false);
  });

  it("takes a named key, a TLS pin and a ticket lifetime", async () => {
    const named = join(scratch, "other", "bridge.key");
    const { publicKey } = await ensureBridgeKey(named);
    const pin = "AB".repeat(32);
    const { item } = await prepare(["--gpu-bridge", "tcp!10.0.2.2!7000", "--gpu-bridge-key", named, "--gpu-bridge-pin", pin, "--gpu-bridge-ttl", "600"], join(scratch, "run2"));
    const content = parseGuestBridge(readFileSync(item!.fwCfg.file, "utf8"));
    expect(content).toMatchObject({ dial: "tcp!10.0.2.2!7000", pin });
    const t = verifyTicket(content.ticket, { keys: [publicKey] });
    expect(t.exp - t.iat).toBe(600);
    await item!.remove();
    const noDriver = await prepare(["--gpu-bridge", "tcp!10.0.2.2!7000", "--gpu-bridge-key", named], join(scratch, "run3"), ["virtio_net"]);
    expect(noDriver.err).toContain("warning: the board loads no qemu_fw_cfg module");
    await noDriver.item!.remove();
  });

  it("cohesix boot refuses --gpu-bridge-key without --gpu-bridge before building anything", async () => {
    let err = "";
    const code = await main(["boot", "--gpu-bridge-key", "k", "--dir", join(scratch, "never")], { out: () => {}, err: (t) => (err += t), env });
    expect(code).toBe(2);
    expect(err).toContain("--gpu-bridge-key, --gpu-bridge-pin and --gpu-bridge-ttl go with --gpu-bridge DIAL");
    expect(existsSync(join(scratch, "never"))).toBe(false);
  });
});
