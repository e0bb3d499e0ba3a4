/**
 * The A/B boot script's text: it reads state.env before state.bak, writes
 * the taken try before it loads any kernel, imports only the ab_* variables
 * and at most one state file's bytes, names the slot on the kernel command
 * line, and mkimage compiles it. (It runs under real U-Boot in
 * uboot-ab.e2e.test.ts.)
 */
import { execa } from "execa";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { STATE_VARS, bootScript } from "../../update/index.ts";

const cmdline = "console=ttyAMA0 rdinit=/init panic=-1 cohesix.boot=/dev/vda1 cohesix.state=/dev/vda2";
const text = bootScript({ cmdline });
const lines = text.split("\n");
const first = (pattern: RegExp): number => lines.findIndex((l) => pattern.test(l));

describe("A/B boot script", () => {
  it("reads state.env first and state.bak only when state.env is not whole", () => {
    expect(first(/ state\.env 0x200/)).toBeGreaterThan(-1);
    expect(first(/ state\.env 0x200/)).toBeLessThan(first(/ state\.bak 0x200/));
  });

  it("imports only the ab_* variables, and loads at most 512 bytes of a state file", () => {
    const imports = lines.filter((l) => l.includes("env import"));
    expect(imports).toHaveLength(2);
    for (const l of imports) expect(l.trim().endsWith(STATE_VARS.join(" ") + "; then")).toBe(true);
    for (const l of lines.filter((l) => /load .* state\./.test(l))) expect(l).toMatch(/ 0x200; then$/);
  });

  it("writes state.env, then state.bak, before the first kernel load, and boots the try slot only when state.env was written", () => {
    const writeEnv = first(/fatwrite .* state\.env 0x200; then setenv cx_wrote 1; fatwrite .* state\.bak 0x200; fi/);
    expect(writeEnv).toBeGreaterThan(-1);
    expect(writeEnv).toBeLessThan(first(/\/Image; then$/));
    const trySlot = first(/setenv cx_slot \$\{ab_try\}/);
    expect(lines[first(/if test "\$\{cx_wrote\}" = 1; then/)]).toBeDefined();
    expect(first(/if test "\$\{cx_wrote\}" = 1; then/)).toBeLessThan(trySlot);
  });

  it("names the slot, how it was chosen and the tries left on the kernel command line", () => {
    expect(text).toContain(`setenv bootargs "${cmdline} cohesix.slot=\${cx_slot} cohesix.slot_boot=\${cx_kind} cohesix.tries_left=\${ab_tries}"`);
    expect(text).toContain('echo "cohesix: kernel command line: ${bootargs}"');
    expect(text).toContain("/${cx_slot}/Image");
    expect(text).toContain("/${cx_slot}/initrd.gz");
    expect(text).toContain("booti ${kernel_addr_r} ${ramdisk_addr_r}:${cx_initrd_size} ${fdtcontroladdr}");
  });

  it("loads a board's device tree when one is given", () => {
    const withFdt = bootScript({ cmdline, fdt: "/board.dtb" });
    expect(withFdt).toContain("load ${devtype} ${devnum}:${distro_bootpart} ${fdt_addr_r} /board.dtb");
    expect(withFdt).toContain("${fdt_addr_r}\n");
  });

  it("refuses a command line U-Boot's shell would reinterpret", () => {
    for (const bad of ['quiet"; reset; echo "', "a;b", "x=${y}", "a\nb", "a\\b"]) expect(() => bootScript({ cmdline: bad })).toThrow(/may hold only/);
    expect(() => bootScript({ cmdline, fdt: "board dtb" })).toThrow(/device tree path/);
  });
});

describe("compiled by mkimage", () => {
  const work = mkdtempSync(join(tmpdir(), "cohesix-boot-script-"));
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it("mkimage -T script makes a legacy image whose payload is the script", async () => {
    writeFileSync(join(work, "boot.txt"), text);
    const r = await execa("mkimage", ["-A", "arm64", "-T", "script", "-C", "none", "-d", join(work, "boot.txt"), join(work, "boot.scr")], { reject: false, env: { SOURCE_DATE_EPOCH: "1700000000" } });
    expect(r.exitCode, `install u-boot-tools (scripts/setup.sh): ${r.stderr}`).toBe(0);
    const scr = readFileSync(join(work, "boot.scr"));
    expect(scr.readUInt32BE(0)).toBe(0x27051956);
    // 64-byte header, then the script's length table (length, 0), then the script.
    expect(scr.readUInt32BE(64)).toBe(Buffer.byteLength(text));
    expect(scr.subarray(72).toString("utf8")).toBe(text);
  });
});
