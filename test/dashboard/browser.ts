/**
 * Debian's Chromium, driven by playwright-core (never a downloaded browser):
 * one browser per suite, signed in to a dashboard with its one-time URL.
 */
import { chromium, type Browser, type Page } from "playwright-core";
import type { DashboardChild } from "./helpers.ts";

/** Where setup.sh installs Chromium. */
export const CHROMIUM = "/usr/bin/chromium";

/** Launches Chromium (as root here, hence no sandbox). */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
}

/** A page signed in to `dash` with its one-time login URL, showing the page's root. */
export async function signedInPage(browser: Browser, dash: DashboardChild): Promise<Page> {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await page.goto(dash.loginUrl);
  await page.waitForSelector("#stream.open", { timeout: 15_000 });
  return page;
}

/** Opens an appliance's page and waits for it to show live. */
export async function openAppliance(page: Page, id: string): Promise<void> {
  await page.evaluate(`location.hash = ${JSON.stringify(`#/a/${encodeURIComponent(id)}`)}`);
  await page.waitForSelector("#appliance #live.live", { timeout: 20_000 });
}
