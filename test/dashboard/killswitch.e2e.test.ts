/**
 * The kill switch from the page, against a QEMU guest that `cohesix boot`
 * runs: pause shows `paused` and stalls 9P clients, resume brings them back,
 * snapshot and restore work (a worker spawned after the snapshot is gone
 * after the restore). One guest, one dashboard, one browser.
 */
import { join } from "node:path";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { parseWorkers, waitFor } from "../cli/appliance-helpers.ts";
import { E2e } from "../qemu/harness.ts";
import { launchChromium, openAppliance, signedInPage } from "./browser.ts";
import { startDashboardChild, type DashboardChild } from "./helpers.ts";

const BOOT_MS = 300_000;

let e2e!: E2e;
let dash: DashboardChild;
let browser: Browser;
let page: Page;

/** Clicks `selector` and waits for that action's result line. */
async function act(selector: string): Promise<{ ok: boolean; text: string }> {
  const line = page.locator("#result");
  const before = Number(await line.getAttribute("data-seq"));
  await page.click(selector);
  return waitFor(`the result of ${selector}`, async () => {
    if (Number(await line.getAttribute("data-seq")) <= before || (await line.getAttribute("data-pending")) !== "false") return undefined;
    return { ok: (await line.getAttribute("class"))!.includes("ok"), text: (await line.textContent())! };
  }, { intervalMs: 100, timeoutMs: 60_000 });
}

describe("the kill switch from the page (QEMU guest)", () => {
  beforeAll(async () => {
    e2e = await E2e.create("cohesix-dash-e2e-");
    const r = await e2e.cohesix(["boot", "--detach", "--port", "0", "--queen-pub", e2e.queenPub], { timeoutMs: BOOT_MS });
    if (r.exitCode !== 0) throw new Error(`cohesix boot failed (${r.exitCode}):\n${r.stderr}`);
    e2e.dial = r.stdout.split("\n")[0]!;
    await e2e.queen(["cat", "/proc/boot"]);
    dash = await startDashboardChild({ queenKey: e2e.queenKey, env: e2e.env }, ["--addr", e2e.dial, "--dir", join(e2e.dir, ".cohesix"), "--timeout", "5"]);
    browser = await launchChromium();
    page = await signedInPage(browser, dash);
    await openAppliance(page, e2e.dial);
  }, BOOT_MS + 60_000);

  afterAll(async () => {
    await browser?.close();
    await dash?.stop();
    if (e2e) await e2e.teardown();
  }, 120_000);

  test("the page offers the kill switch for the VM, running", async () => {
    await waitFor("the VM running", async () => (await page.locator("#vm-status").textContent()) === "running");
  });

  test("pause shows paused and stalls 9P clients; resume brings them back", { timeout: 120_000 }, async () => {
    const paused = await act("#vm-pause");
    expect(paused).toEqual({ ok: true, text: "pause: paused" });
    expect(await page.locator("#vm-status").textContent()).toBe("paused");
    const stalled = await e2e.cohesix(["cat", "/proc/lifecycle/state", "--addr", e2e.dial, "--key", e2e.queenKey, "--timeout", "3"]);
    expect(stalled.exitCode).toBe(1);
    expect(stalled.stdout).toBe("");
    const resumed = await act("#vm-resume");
    expect(resumed).toEqual({ ok: true, text: "resume: running" });
    expect((await e2e.queen(["cat", "/proc/lifecycle/state"])).trim()).toMatch(/^(ONLINE|DEGRADED)$/);
    await waitFor("the page live again", async () => (await page.locator("#live").textContent()) === "live", { timeoutMs: 60_000 });
  });

  test("snapshot and restore from the page: a worker spawned after the snapshot is gone after the restore", { timeout: 240_000 }, async () => {
    await page.fill("#vm-name", "dash-e2e");
    const snap = await act("#vm-snapshot");
    expect(snap).toEqual({ ok: true, text: "snapshot dash-e2e: paused" });
    await waitFor("the snapshot listed", async () => (await page.locator("#vm-snapshots").textContent())!.split(", ").includes("dash-e2e"));
    expect((await act("#vm-resume")).text).toBe("resume: running");
    const id = (await e2e.queen(["spawn", "heartbeat", "--ticks", "1000"])).trim();
    expect(parseWorkers(await e2e.queen(["cat", "/proc/workers"])).has(id)).toBe(true);
    const restored = await act("#vm-restore");
    expect(restored).toEqual({ ok: true, text: "restore dash-e2e: running" });
    await waitFor(`${id} gone after the restore`, async () => !parseWorkers(await e2e.queen(["cat", "/proc/workers"])).has(id), { timeoutMs: 60_000 });
    await waitFor("the page live again, without the worker", async () => (await page.locator("#live").textContent()) === "live" && (await page.locator(`#workers tr[data-worker="${id}"]`).count()) === 0, { timeoutMs: 90_000 });
  });

  test("restoring a snapshot the disk does not hold is one error on the page, and the VM keeps running", async () => {
    await page.fill("#vm-name", "nosuch");
    const r = await act("#vm-restore");
    expect(r.ok).toBe(false);
    expect(r.text).toMatch(/^restore nosuch: not found: snapshot nosuch; snapshots: .*dash-e2e/);
    expect(await page.locator("#vm-status").textContent()).toBe("running");
  });
});
