/**
 * The launcher's disk-image boot (a flashed image through firmware, as on a
 * board) and the console on a pty: the arguments as data, and finding the
 * pty QEMU names on its stderr.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { consolePty, qemuArgs, type QemuBoard } from "../../qemu/index.ts";

const board: QemuBoard = {
  name: "aarch64-virt",
  qemu: { binary: "qemu-system-aarch64", machine: "virt", cpu: "cortex-a57", memoryMb: 1024, smp: 2, nic: "virtio-net-pci" },
  network: { nineDoorPort: 5640 },
};
const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

describe("qemuArgs() for a disk image", () => {
  const args = qemuArgs({
    board,
    disk: { firmware: "/usr/lib/u-boot/qemu_arm64/u-boot.bin", image: "/tmp/x/cohesix.img", machineOptions: "acpi=off" },
    hostPort: 40000,
    qmpSocket: "/tmp/x/qmp.sock",
    consoleLog: "/tmp/x/console.log",
    serialPty: true,
  });
  const after = (flag: string): string[] => args.flatMap((a, i) => (a === flag ? [args[i + 1]!] : []));

  it("loads the firmware with -bios and puts the raw image on virtio-blk-device, with no -kernel, -initrd or state disk", () => {
    expect(after("-bios")).toEqual(["/usr/lib/u-boot/qemu_arm64/u-boot.bin"]);
    expect(after("-M")).toEqual(["virt,acpi=off"]);
    expect(after("-drive")).toEqual(["if=none,id=disk,file=/tmp/x/cohesix.img,format=raw"]);
    expect(after("-device")).toContain("virtio-blk-device,drive=disk");
    for (const flag of ["-kernel", "-initrd", "-append"]) expect(args).not.toContain(flag);
    expect(args.join(" ")).not.toMatch(/qcow2/);
  });

  it("keeps the host forward on 127.0.0.1 and puts the console on a pty that is also logged", () => {
    expect(after("-netdev")).toEqual(["user,id=n0,hostfwd=tcp:127.0.0.1:40000-:5640"]);
    expect(after("-chardev")).toEqual(["pty,id=serial0,logfile=/tmp/x/console.log,logappend=on"]);
    expect(after("-serial")).toEqual(["chardev:serial0"]);
  });

  it("refuses a kernel boot without a kernel", () => {
    expect(() => qemuArgs({ board, hostPort: 1, qmpSocket: "q", consoleLog: "c" })).toThrow(/a kernel, an initramfs and a command line are needed unless a disk image is booted/);
  });
});

describe("consolePty()", () => {
  it("reads the pty QEMU names on its stderr, and says so when it never does", async () => {
    const dir = await mkdtemp(join(tmpdir(), "cohesix-pty-"));
    dirs.push(dir);
    const err = join(dir, "qemu.err");
    setTimeout(() => void writeFile(err, "qemu-system-aarch64: -chardev pty,id=serial0: char device redirected to /dev/pts/7 (label serial0)\n"), 100);
    expect(await consolePty(err, { timeoutMs: 5000 })).toBe("/dev/pts/7");
    await expect(consolePty(join(dir, "none.err"), { timeoutMs: 200 })).rejects.toThrow(/no console pty named in .*none\.err/);
  });
});
