/**
 * The QEMU command line and launcher without booting anything.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadBoard } from "../../boards/index.ts";
import { WATCHDOG_DEVICE, checkName, launchQemu, qemuArgs, rtcArg } from "../../qemu/index.ts";

const board = loadBoard("aarch64-virt");
const dir = mkdtempSync(join(tmpdir(), "cohesix-qemu-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const base = {
  board,
  kernel: "Image",
  initrd: "initramfs.cpio.gz",
  cmdline: "console=ttyAMA0",
  hostPort: 15640,
  stateDisk: "state.qcow2",
  qmpSocket: join(dir, "qmp.sock"),
  consoleLog: join(dir, "console.log"),
};

describe("qemuArgs", () => {
  it("forwards only 127.0.0.1 to the guest's NineDoor port, needs no option ROM and never reboots", () => {
    const args = qemuArgs(base);
    expect(args).toContain(`user,id=n0,hostfwd=tcp:127.0.0.1:15640-:${board.network.nineDoorPort}`);
    expect(args).toContain("virtio-net-pci,netdev=n0,romfile=");
    expect(args).toContain("-no-reboot");
    expect(args.slice(args.indexOf("-cpu"), args.indexOf("-cpu") + 2)).toEqual(["-cpu", board.qemu.cpu]);
    expect(args).toContain("if=none,id=state,file=state.qcow2,format=qcow2");
    expect(args).not.toContain("-loadvm");
  });

  it("hands firmware config items to the guest by file, never by content, escaping commas in the path", () => {
    const args = qemuArgs({ ...base, fwCfg: [{ name: "opt/cohesix/gpu-bridge", file: "/run/a,b/gpu-bridge.json" }] });
    expect(args.slice(args.indexOf("-fw_cfg"), args.indexOf("-fw_cfg") + 2)).toEqual(["-fw_cfg", "name=opt/cohesix/gpu-bridge,file=/run/a,,b/gpu-bridge.json"]);
    expect(qemuArgs(base)).not.toContain("-fw_cfg");
  });

  it("gives the guest an RTC on the host's clock unless told otherwise", () => {
    const rtc = (args: string[]) => args[args.indexOf("-rtc") + 1];
    expect(rtc(qemuArgs(base))).toBe("base=utc,clock=host");
    expect(rtc(qemuArgs({ ...base, restore: "snap-1" }))).toBe("base=utc,clock=host");
    expect(rtc(qemuArgs({ ...base, rtc: { base: "1970-01-01T00:00:00", clock: "vm" } }))).toBe("base=1970-01-01T00:00:00,clock=vm");
  });

  it("boots a flashed disk through its firmware and ends QEMU when the guest reboots, with no watchdog", () => {
    const args = qemuArgs({ board, hostPort: 15640, qmpSocket: base.qmpSocket, consoleLog: base.consoleLog, disk: { firmware: "u-boot.bin", image: "card.img" } });
    expect(args.slice(args.indexOf("-bios"), args.indexOf("-bios") + 2)).toEqual(["-bios", "u-boot.bin"]);
    expect(args).toContain("-no-reboot");
    expect(args).not.toContain(WATCHDOG_DEVICE);
  });

  it("lets an A/B disk's guest reboot into its firmware (same VM, same host port) and gives it the i6300esb watchdog", () => {
    const args = qemuArgs({ board, hostPort: 15640, qmpSocket: base.qmpSocket, consoleLog: base.consoleLog, disk: { firmware: "u-boot.bin", image: "ab.img", ab: true } });
    expect(args).not.toContain("-no-reboot");
    expect(args.slice(args.indexOf(WATCHDOG_DEVICE) - 1, args.indexOf(WATCHDOG_DEVICE) + 1)).toEqual(["-device", "i6300esb"]);
    expect(args).toContain(`user,id=n0,hostfwd=tcp:127.0.0.1:15640-:${board.network.nineDoorPort}`);
  });

  it("boots from a snapshot with -loadvm", () => {
    const args = qemuArgs({ ...base, restore: "snap-1" });
    expect(args.slice(-2)).toEqual(["-loadvm", "snap-1"]);
  });
});

describe("launchQemu", () => {
  it("names the package to install when the QEMU binary is missing", async () => {
    const missing = { ...board, qemu: { ...board.qemu, binary: "qemu-system-aarch64-not-here" } };
    await expect(launchQemu({ ...base, board: missing, stderrFile: join(dir, "qemu.err") })).rejects.toThrow(/qemu-system-aarch64-not-here is not installed: install the/);
  });
});

describe("checkName", () => {
  it("refuses snapshot names that would reach the monitor as more than a name", () => {
    expect(checkName("before-update.1")).toBe("before-update.1");
    expect(() => checkName("a b")).toThrow(/invalid: snapshot name/);
    expect(() => checkName("x;quit")).toThrow(/invalid/);
  });
});

describe("rtcArg", () => {
  it("takes utc or a UTC date or date and time, and a clock", () => {
    expect(rtcArg()).toBe("base=utc,clock=host");
    expect(rtcArg({ base: "utc", clock: "vm" })).toBe("base=utc,clock=vm");
    expect(rtcArg({ base: "2030-01-01" })).toBe("base=2030-01-01,clock=host");
    expect(rtcArg({ base: "1970-01-01T00:00:00", clock: "rt" })).toBe("base=1970-01-01T00:00:00,clock=rt");
    expect(rtcArg({ base: "2106-02-07T06:28:15" })).toBe("base=2106-02-07T06:28:15,clock=host");
  });

  it("refuses dates QEMU or the PL031 would not take, and unknown clocks", () => {
    for (const base of ["2030-02-30", "2030-1-1", "2030-01-01T25:00:00", "2030-01-01 00:00:00", "1969-12-31", "2106-02-07T06:28:16", "now", "localtime", ""]) {
      expect(() => rtcArg({ base }), base).toThrow(/^invalid: rtc base .*use utc or a UTC date from 1970 to 2106/);
    }
    expect(() => rtcArg({ clock: "wall" as "vm" })).toThrow('invalid: rtc clock "wall": use host, vm or rt');
  });
});
