/**
 * Acceptance of the dashboard in a real browser (Debian's Chromium driven
 * by playwright-core) against a host-board appliance: a worker spawned from
 * the CLI shows up within 2 s and its sparkline moves; a spawn from the page
 * starts a real process and a kill from the page ends it, each in the audit
 * tail; bad input from the page is one clear error and the server goes on.
 * One browser, one appliance and one dashboard for every case.
 *
 * The screenshot of the appliance page goes to a temporary file; with
 * COHESIX_UPDATE_SCREENSHOT=1 (`npm run docs:screenshot`) it replaces
 * docs/dashboard.png.
 */
import { copyFile, readFile } from "node:fs/promises";
import { join } from "node:path";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ROOT, cohesix, makeScratch, serve, type Scratch, type Served } from "../cli/helpers.ts";
import { parseWorkers, pidAlive, waitFor } from "../cli/appliance-helpers.ts";
import { startDashboardChild, type DashboardChild } from "./helpers.ts";
import { launchChromium, openAppliance, signedInPage } from "./browser.ts";

let scratch: Scratch;
let served: Served;
let dash: DashboardChild;
let browser: Browser;
let page: Page;

const queen = (args: string[]) => cohesix([...args, "--addr", served.addr, "--key", scratch.queenKey], { env: scratch.env });
const workers = async () => parseWorkers((await queen(["cat", "/proc/workers"])).stdout);
/** Clicks `selector` and waits for that action's result line: ok or error, and its text. */
const act = async (selector: string): Promise<{ ok: boolean; text: string }> => {
  const line = page.locator("#result");
  const before = Number(await line.getAttribute("data-seq"));
  await page.click(selector);
  return waitFor(`the result of ${selector}`, async () => {
    if (Number(await line.getAttribute("data-seq")) <= before || (await line.getAttribute("data-pending")) !== "false") return undefined;
    return { ok: (await line.getAttribute("class"))!.includes("ok"), text: (await line.textContent())! };
  }, { intervalMs: 50 });
};

beforeAll(async () => {
  scratch = await makeScratch();
  served = await serve(scratch);
  dash = await startDashboardChild(scratch, ["--addr", served.addr]);
  browser = await launchChromium();
  page = await signedInPage(browser, dash);
  await openAppliance(page, served.addr);
});

afterAll(async () => {
  await browser?.close();
  await dash?.stop();
  await served?.stop();
  await scratch?.remove();
});

describe("the dashboard in Chromium, against a host-board appliance", () => {
  test("the fleet list shows the appliance live with its version and lifecycle", async () => {
    await page.evaluate(`location.hash = "#/"`);
    const row = page.locator(`#fleet tr[data-id="${served.addr}"]`);
    await row.waitFor();
    expect(await row.getAttribute("data-live")).toBe("live");
    expect(await row.textContent()).toMatch(/0\.1\.0.*ONLINE/);
    await openAppliance(page, served.addr);
  });

  test("a worker spawned from the CLI shows up within 2 s, and its sparkline moves", async () => {
    const spawned = await queen(["spawn", "heartbeat", "--ticks", "1000"]);
    expect(spawned.exitCode).toBe(0);
    const id = spawned.stdout.trim();
    const started = Date.now();
    await page.waitForSelector(`#workers tr[data-worker="${id}"]`, { timeout: 2000 });
    expect(Date.now() - started).toBeLessThanOrEqual(2000);
    const points = page.locator(`#workers tr[data-worker="${id}"] .spark`);
    const last = page.locator(`#workers tr[data-worker="${id}"] td.last`);
    await waitFor("a first point", async () => Number(await points.getAttribute("data-points")) > 0);
    const before = { n: Number(await points.getAttribute("data-points")), tick: await last.getAttribute("data-tick") };
    await waitFor("the sparkline to move", async () => Number(await points.getAttribute("data-points")) > before.n && (await last.getAttribute("data-tick")) !== before.tick);
    await waitFor("the spawn in the audit tail", async () => (await page.locator("#log").textContent())!.includes(`spawned ${id} role=heartbeat`));
  });

  test("a spawn from the page starts a real process; a kill from the page ends it; both are in the audit tails", async () => {
    await page.selectOption("#spawn-program", "heartbeat");
    await page.fill("#spawn-ticks", "500");
    const spawned = await act("#spawn-submit");
    expect(spawned.ok, spawned.text).toBe(true);
    const id = /"worker":"(worker-[0-9]+)"/.exec(spawned.text)![1]!;
    const pid = Number((await waitFor(`${id} running with a pid`, async () => {
      const w = (await workers()).get(id);
      return w?.status === "running" && w.pid !== "-" ? w : undefined;
    })).pid);
    expect(pidAlive(pid)).toBe(true);
    await waitFor(`${id} on the page`, () => page.locator(`#workers tr[data-worker="${id}"][data-status="running"]`).count());
    await waitFor("the spawn in the logs", async () => (await page.locator("#log").textContent())!.includes(`spawned ${id} role=heartbeat pid=${pid}`));

    const killed = await act(`#workers tr[data-worker="${id}"] button.kill`);
    expect(killed.ok, killed.text).toBe(true);
    expect(killed.text).toContain(`"worker":"${id}"`);
    await waitFor(`process ${pid} to end`, () => !pidAlive(pid));
    await waitFor("the kill in the queen log", async () => (await page.locator("#log").textContent())!.includes(`killed ${id} by queen`));
    const audit = (await page.locator("#audit").textContent())!;
    expect(audit).toContain(`ok {"spawn":"heartbeat","ticks":500}`);
    expect(audit).toContain(`ok {"kill":"${id}"}`);
    await waitFor(`${id} no longer running on the page`, async () => (await page.locator(`#workers tr[data-worker="${id}"][data-status="running"]`).count()) === 0);
  });

  test("a malformed spawn form is one clear error on the page, and nothing starts", async () => {
    const before = (await workers()).size;
    await page.fill("#spawn-ticks", "ten");
    const r = await act("#spawn-submit");
    expect(r.ok).toBe(false);
    expect(r.text).toBe('spawn heartbeat: invalid: spawn: ticks must be a positive whole number, got "ten"');
    expect((await workers()).size).toBe(before);
    await page.fill("#spawn-ticks", "");
  });

  test("an unknown worker is one clear error on the page, and the server keeps running", async () => {
    await page.fill("#kill-id", "worker-999");
    const r = await act("#kill-submit");
    expect(r.ok).toBe(false);
    expect(r.text).toBe(`kill worker-999: not found: kill: ${served.addr} runs no worker worker-999`);
    await page.fill("#kill-id", "worker-1x");
    expect((await act("#kill-submit")).text).toBe('kill worker-1x: invalid: kill takes a worker id such as worker-3, got "worker-1x"');
    // Still serving: the stream is open, the appliance live, and a good action works.
    expect(await page.locator("#stream").getAttribute("class")).toContain("open");
    expect(await page.locator("#live").textContent()).toBe("live");
    expect((await act("#lc-cordon")).ok).toBe(true);
    expect((await act("#lc-resume")).ok).toBe(true);
  });

  test("the appliance page is captured as a screenshot (docs/dashboard.png with COHESIX_UPDATE_SCREENSHOT=1)", async () => {
    await queen(["spawn", "heartbeat", "--ticks", "1000"]);
    await waitFor("two running workers on the page", async () => (await page.locator('#workers tr[data-status="running"]').count()) >= 2);
    await page.waitForTimeout(1500);
    const file = join(scratch.dir, "dashboard.png");
    await page.screenshot({ path: file, fullPage: true });
    const png = await readFile(file);
    expect(png.subarray(1, 4).toString()).toBe("PNG");
    if (process.env.COHESIX_UPDATE_SCREENSHOT === "1") await copyFile(file, join(ROOT, "docs", "dashboard.png"));
  });
});
