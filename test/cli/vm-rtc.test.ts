/**
 * `cohesix boot --rtc-base DATE --rtc-clock host|vm|rt` (cli/vm.ts): a bad
 * date or clock is refused before anything is built or started. (The
 * guest following the RTC after a restore, end to end:
 * test/qemu/restore-clock.e2e.test.ts.)
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { main } from "../../cli/main.ts";

const scratch = mkdtempSync(join(tmpdir(), "cohesix-vm-rtc-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

async function boot(argv: string[]): Promise<{ code: number; err: string }> {
  let err = "";
  const code = await main(["boot", ...argv, "--dir", join(scratch, "never")], { out: () => {}, err: (t) => (err += t), env: { XDG_CONFIG_HOME: join(scratch, "config") } });
  return { code, err };
}

describe("boot --rtc-base / --rtc-clock", () => {
  it("refuses a date QEMU would not take, naming the forms it takes, before building", async () => {
    for (const base of ["yesterday", "2030-13-01", "1969-12-31", "2030-01-01T12:00"]) {
      const r = await boot(["--rtc-base", base]);
      expect(r.code, base).toBe(1);
      expect(r.err).toContain(`invalid: rtc base ${JSON.stringify(base)}: use utc or a UTC date from 1970 to 2106, as 2030-01-01 or 2030-01-01T12:00:00`);
    }
    expect(existsSync(join(scratch, "never"))).toBe(false);
  });

  it("refuses an unknown clock", async () => {
    const r = await boot(["--rtc-clock", "wall"]);
    expect(r.code).toBe(1);
    expect(r.err).toContain('invalid: rtc clock "wall": use host, vm or rt');
    expect(existsSync(join(scratch, "never"))).toBe(false);
  });
});
