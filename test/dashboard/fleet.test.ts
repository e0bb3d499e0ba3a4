/**
 * The fleet list in Chromium: several appliances whose fleet links publish
 * to a real mosquitto (simulated appliances: FleetLink with its outbox, as
 * the appliance runs it), one of them closed and so marked dead by its
 * retained death record; and a malformed record on the fleet's topics is
 * dropped without a row.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { FleetLink, Outbox } from "../../fleet/index.ts";
import { waitFor } from "../cli/appliance-helpers.ts";
import { makeScratch, serve, type Scratch } from "../cli/helpers.ts";
import { Broker, haveMosquitto } from "../fleet/broker.ts";
import { launchChromium, signedInPage } from "./browser.ts";
import { postCtl, startDashboardChild, type DashboardChild } from "./helpers.ts";

let dir: string;
let scratch: Scratch;
let broker: Broker;
let dash: DashboardChild;
let browser: Browser;
let page: Page;
const links: FleetLink[] = [];

async function appliance(id: string, boot: Record<string, string>): Promise<FleetLink> {
  const link = new FleetLink({
    url: broker.url,
    id,
    outbox: await Outbox.open(join(dir, id)),
    birth: () => ({ version: "0.1.0", boot, lifecycle: "ONLINE" }),
    minBackoffMs: 100,
    maxBackoffMs: 400,
  });
  links.push(link);
  link.start();
  await waitFor(`${id} online`, () => link.state === "online");
  return link;
}

beforeAll(async () => {
  if (!haveMosquitto) throw new Error("mosquitto is not installed: run scripts/setup.sh (apt-get install mosquitto)");
  dir = await mkdtemp(join(tmpdir(), "cohesix-dash-fleet-"));
  scratch = await makeScratch();
  broker = await Broker.start(dir);
  await appliance("app-1", { board: "host", slot: "a", slot_state: "good" });
  await appliance("app-2", { board: "aarch64-virt", slot: "b", slot_state: "trying" });
  const gone = await appliance("app-3", { board: "host" });
  await gone.close();
  dash = await startDashboardChild(scratch, ["--broker", broker.url, "--dir", join(dir, "no-boards")]);
  browser = await launchChromium();
  page = await signedInPage(browser, dash);
});

afterAll(async () => {
  await browser?.close();
  await dash?.stop();
  for (const l of links) await l.close().catch(() => {});
  await broker?.stop();
  await scratch?.remove();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("the fleet list in Chromium", () => {
  test("shows several appliances from their births, and the closed one marked dead", async () => {
    const row = (id: string) => page.locator(`#fleet tr[data-id="${id}"]`);
    await waitFor("three fleet rows", async () => (await page.locator("#fleet tbody tr").count()) >= 3);
    await waitFor("app-3 dead", async () => (await row("app-3").getAttribute("data-live")) === "dead");
    expect(await row("app-3").locator("td.live").textContent()).toBe("dead");
    expect(await row("app-1").getAttribute("data-live")).toBe("live");
    expect(await row("app-2").getAttribute("data-live")).toBe("live");
    expect(await row("app-1").textContent()).toMatch(/0\.1\.0.*a \/ good.*ONLINE/);
    expect(await row("app-2").textContent()).toMatch(/b \/ trying/);
    // Telemetry is not retained: what the list counts is what arrives while it watches.
    for (const w of ["worker-1", "worker-2"]) await links[0]!.publish({ kind: "telemetry", worker: w, data: { tick: 1 } });
    await waitFor("app-1's two workers", async () => (await row("app-1").locator("td.count").textContent()) === "2");
  });

  test("the filters narrow the list: not live shows only the dead one", async () => {
    await page.selectOption("#filter-live", "dead");
    await waitFor("one row", async () => (await page.locator("#fleet tbody tr").count()) === 1);
    expect(await page.locator("#fleet tbody tr").getAttribute("data-id")).toBe("app-3");
    await page.selectOption("#filter-live", "all");
    await page.fill("#filter-text", "app-2");
    await waitFor("app-2 alone", async () => (await page.locator("#fleet tbody tr").count()) === 1);
    await page.fill("#filter-text", "");
  });

  test("a malformed record, or one whose id is not its topic's, makes no row", async () => {
    const { connectAsync } = await import("mqtt");
    const client = await connectAsync(broker.url, { clientId: "forger", protocolVersion: 4 });
    try {
      const birth = { v: 1, kind: "birth", id: "app-9", seq: 1, ts_ms: Date.now(), historical: false, session: 1, version: "6.6.6", boot: {}, lifecycle: "ONLINE" };
      await client.publishAsync("cohesix/app-8/birth", JSON.stringify(birth), { qos: 1 });
      await client.publishAsync("cohesix/app-7/birth", "{not json", { qos: 1 });
      await client.publishAsync("cohesix/app-6/birth", JSON.stringify({ ...birth, id: "app-6", version: 7 }), { qos: 1 });
      // A good record after them, so the page has seen the bad ones by the time it shows this one.
      await links[1]!.publish({ kind: "lifecycle", state: "DRAINING", reason: "drained by queen" });
      await waitFor("app-2 draining", async () => (await page.locator(`#fleet tr[data-id="app-2"]`).textContent())!.includes("DRAINING"));
      for (const id of ["app-6", "app-7", "app-8", "app-9"]) expect(await page.locator(`#fleet tr[data-id="${id}"]`).count(), id).toBe(0);
    } finally {
      await client.endAsync();
    }
  });

  test("a link that comes back is live again", async () => {
    await appliance("app-3", { board: "host" });
    await waitFor("app-3 live", async () => (await page.locator(`#fleet tr[data-id="app-3"]`).getAttribute("data-live")) === "live");
  });

  test("an appliance held over 9P that also publishes to the fleet is one row, and its fleet id drives it", async () => {
    const served = await serve(scratch, ["--fleet", broker.url, "--fleet-id", "app-h"], { state: join(dir, "served-state") });
    const both = await startDashboardChild(scratch, ["--addr", served.addr, "--broker", broker.url, "--dir", join(dir, "no-boards")]);
    const p = await signedInPage(browser, both);
    try {
      const row = p.locator(`#fleet tr[data-id="${served.addr}"]`);
      await waitFor("the 9P row naming its fleet id", async () => (await row.count()) === 1 && (await row.textContent())!.includes("9P, fleet app-h"), { timeoutMs: 30_000 });
      expect(await p.locator('#fleet tr[data-id="app-h"]').count()).toBe(0);
      // The page's own session: the cookie is HttpOnly, so it comes from the browser, not the page's script.
      const session = (await p.context().cookies()).find((c) => c.name === "cohesix_dash")!;
      const cookie = `${session.name}=${session.value}`;
      const r = await postCtl(both, cookie, { appliance: "app-h", command: { lifecycle: "cordon" } });
      expect(r.body.ok, r.body.error).toBe(true);
    } finally {
      await p.close();
      await both.stop();
      await served.stop();
    }
  });
});
