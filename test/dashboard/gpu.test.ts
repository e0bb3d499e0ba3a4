/**
 * GPU leases and job status on the appliance page: a host board with the
 * simulated GPU bridge mounted at /gpu; a GPU worker spawned from the page
 * with a lease shows the lease ACTIVE and its jobs' status.
 */
import { execa, type ResultPromise } from "execa";
import { createInterface } from "node:readline";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { pidAlive, signalPid, waitFor } from "../cli/appliance-helpers.ts";
import { BIN, ROOT, makeScratch, serve, type Scratch, type Served } from "../cli/helpers.ts";
import { launchChromium, openAppliance, signedInPage } from "./browser.ts";
import { startDashboardChild, type DashboardChild } from "./helpers.ts";

let scratch: Scratch;
let bridge: { child: ResultPromise; pid: number; addr: string } | undefined;
let served: Served;
let dash: DashboardChild;
let browser: Browser;
let page: Page;

beforeAll(async () => {
  scratch = await makeScratch();
  const base = { ...process.env };
  delete base.COHESIX_ADDR;
  delete base.COHESIX_KEY;
  const child = execa("node", [BIN, "gpu-bridge", "--listen", "127.0.0.1:0", "--backend", "sim"], { cwd: ROOT, env: { ...base, ...scratch.env }, extendEnv: false, reject: false });
  const addr = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on("line", (line) => line.startsWith("READY ") && resolve(line.slice(6)));
    void child.then((r) => reject(new Error(`cohesix gpu-bridge exited ${r.exitCode}: ${r.stderr}`)));
  });
  bridge = { child, pid: child.pid!, addr };
  served = await serve(scratch, ["--gpu-bridge", addr]);
  dash = await startDashboardChild(scratch, ["--addr", served.addr]);
  browser = await launchChromium();
  page = await signedInPage(browser, dash);
  await openAppliance(page, served.addr);
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await dash?.stop();
  await served?.stop();
  if (bridge && pidAlive(bridge.pid)) signalPid(bridge.pid, "SIGTERM");
  await bridge?.child;
  await scratch?.remove();
});

describe("GPUs on the appliance page (simulated bridge)", () => {
  test("a GPU worker spawned from the page with a lease shows the lease ACTIVE and its jobs' status", { timeout: 60_000 }, async () => {
    await waitFor("GPU-0 on the page", async () => (await page.locator('#gpus tr[data-gpu="GPU-0"]').count()) === 1);
    await page.selectOption("#spawn-program", "gpu");
    await page.selectOption("#spawn-gpu", "GPU-0");
    await page.fill("#spawn-mem", "1024");
    const line = page.locator("#result");
    const before = Number(await line.getAttribute("data-seq"));
    await page.click("#spawn-submit");
    const text = await waitFor("the spawn's result", async () => (Number(await line.getAttribute("data-seq")) > before && (await line.getAttribute("data-pending")) === "false" ? line.textContent() : undefined));
    expect(text).toMatch(/^spawn gpu: \{"ok":true,"worker":"worker-[0-9]+"/);
    const row = page.locator('#gpus tr[data-gpu="GPU-0"]');
    await waitFor("the lease ACTIVE", async () => /"state":"ACTIVE"/.test((await row.locator("td.lease").textContent())!));
    await waitFor("a job's status", async () => /"state":"(QUEUED|RUNNING|OK)"/.test((await row.locator("td.job").textContent())!), { timeoutMs: 40_000 });
  });
});
