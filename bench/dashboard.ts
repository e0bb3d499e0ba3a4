/**
 * `npm run bench -- dashboard`: the operator dashboard under 100 workers at
 * 1 Hz, measured in the real browser (Debian's Chromium via playwright-core).
 *
 * The appliance is the real root task in a child process
 * (`bench/appliance-target.ts`) with `/worker/worker-1 … worker-N` and no
 * worker processes; the bench holds one worker session per worker and
 * appends one telemetry line per second to each, spread evenly over the
 * second. `cohesix dashboard` (the built CLI, its own process) follows them;
 * Chromium shows the appliance page, where a MutationObserver notes when
 * each line's tick appears in its worker's row.
 *
 * Printed: append → DOM latency p50/p99/max (both clocks are this machine's
 * `Date.now()`), the dashboard server's CPU share and RSS (peak, VmHWM), and
 * the page's JS heap. Targets: p99 ≤ 250 ms, server CPU ≤ 10 % of a core.
 *
 * @example
 * ```sh
 * npm run build && npm run bench -- dashboard                 # 100 workers, 30 s
 * npm run bench -- dashboard --workers 50 --seconds 10
 * ```
 * @module
 */
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { cpus } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import { chromium } from "playwright-core";
import { IOHDRSZ, NineClient, type Fid } from "../nine-door/index.ts";
import { mintTicket } from "../root-task/index.ts";
import { cpuSeconds, load, peakRssBytes, percentile, startAppliance, verdict } from "./child.ts";

const USAGE = `usage: npm run bench -- dashboard [OPTIONS]

  --workers N     workers appending telemetry (default 100)
  --seconds S     seconds measured, one line per worker per second (default 30)
  --warmup S      seconds of appends before measuring (default 5)
`;

const TARGETS = { p99Ms: 250, cpuPercent: 10 };

function count(name: string, text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n <= 0) throw new Error(`${name} must be a positive whole number, got ${JSON.stringify(text)}`);
  return n;
}

function rssBytes(pid: number): number | undefined {
  try {
    const m = readFileSync(`/proc/${pid}/status`, "utf8").match(/^VmRSS:\s+(\d+) kB/m);
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

const mb = (n: number | undefined): string => (n === undefined ? "?" : `${(n / 1e6).toFixed(1)} MB`);

/** Runs the benchmark; resolves with the exit code. */
export async function run(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      workers: { type: "string", default: "100" },
      seconds: { type: "string", default: "30" },
      warmup: { type: "string", default: "5" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const workers = count("--workers", values.workers!);
  const seconds = count("--seconds", values.seconds!);
  const warmup = count("--warmup", values.warmup!);
  const bin = join(process.cwd(), "bin", "cohesix.js");
  if (!existsSync(join(process.cwd(), "dist", "dashboard", "app.js"))) throw new Error("the dashboard's page is not built: run npm run build first");
  console.log(`dashboard bench: node ${process.version}, ${cpus().length} cpus, ${workers} workers at 1 Hz, ${seconds} s measured after ${warmup} s, load average ${load()}`);

  const target = await startAppliance({ workers });
  const sessions: { id: string; client: NineClient; telemetry: Fid }[] = [];
  const dash = spawn(process.execPath, [bin, "dashboard", "--addr", target.tcp, "--key", join(dirname(target.stateDir), "queen.key"), "--listen", "127.0.0.1:0"], { stdio: ["ignore", "pipe", "pipe"] });
  const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
  try {
    const lines: string[] = [];
    await new Promise<void>((resolve, reject) => {
      createInterface({ input: dash.stdout! }).on("line", (l) => {
        lines.push(l);
        if (lines.length === 2) resolve();
      });
      dash.once("exit", (code) => reject(new Error(`cohesix dashboard exited ${code} before READY`)));
    });
    const url = lines[0]!.replace(/^READY /, "");
    console.log(`appliance pid ${target.pid} on ${target.tcp}; dashboard pid ${dash.pid} on ${url}`);

    for (let i = 1; i <= workers; i++) {
      const id = `worker-${i}`;
      const client = await NineClient.dial(target.unix, { msize: 8192 + IOHDRSZ });
      const root = await client.attach({ aname: mintTicket({ role: "worker-heartbeat", sub: id }, target.bootKey, { ttlS: seconds + warmup + 600 }), uname: `worker-heartbeat:${id}` });
      const telemetry = await root.walk(`worker/${id}/telemetry`);
      await telemetry.open("w");
      sessions.push({ id, client, telemetry });
    }

    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    await page.goto(lines[1]!);
    await page.evaluate(`location.hash = ${JSON.stringify(`#/a/${encodeURIComponent(target.tcp)}`)}`);
    await page.waitForSelector(`#workers tr[data-worker="worker-${workers}"]`, { timeout: 30_000 });
    // Notes the first time each (worker, tick) shows in its row.
    await page.evaluate(() => {
      const w = globalThis as unknown as { __seen: Record<string, number>; document: { querySelector(s: string): unknown }; MutationObserver: new (cb: (m: { target: unknown }[]) => void) => { observe(n: unknown, o: object): void } };
      w.__seen = {};
      const note = (el: unknown): void => {
        const e = el as { closest?(s: string): { getAttribute(a: string): string | null; querySelector(s: string): { getAttribute(a: string): string | null } | null } | null; parentElement?: unknown };
        const row = typeof e.closest === "function" ? e.closest("tr[data-worker]") : null;
        if (!row) return;
        const tick = row.querySelector("td.last")?.getAttribute("data-tick");
        const key = `${row.getAttribute("data-worker")}:${tick}`;
        if (tick && w.__seen[key] === undefined) w.__seen[key] = Date.now();
      };
      new w.MutationObserver((ms) => {
        for (const m of ms) note((m.target as { nodeType: number; parentElement: unknown }).nodeType === 1 ? m.target : (m.target as { parentElement: unknown }).parentElement);
      }).observe(w.document.querySelector("#workers tbody"), { subtree: true, attributes: true, attributeFilter: ["data-tick"], childList: true, characterData: true });
    });

    const appended = new Map<string, number>();
    let tick = 0;
    const appendFor = async (s: number, measured: boolean): Promise<void> => {
      const start = Date.now();
      for (let sec = 0; sec < s; sec++) {
        tick++;
        const secondStart = start + sec * 1000;
        await Promise.all(
          sessions.map(async (w, i) => {
            await sleep(Math.max(0, secondStart + (i * 1000) / sessions.length - Date.now()));
            const ts = Date.now();
            if (measured) appended.set(`${w.id}:${tick}`, ts);
            await w.telemetry.write(`${JSON.stringify({ tick, ts_ms: ts, load1: 0.5, rss_kb: 48_000 + i })}\n`);
          }),
        );
      }
    };
    await appendFor(warmup, false);
    const cpuBefore = cpuSeconds(dash.pid!);
    const t0 = Date.now();
    let peakRss = 0;
    const sampler = setInterval(() => (peakRss = Math.max(peakRss, rssBytes(dash.pid!) ?? 0)), 500);
    await appendFor(seconds, true);
    const elapsed = (Date.now() - t0) / 1000;
    const cpuAfter = cpuSeconds(dash.pid!);
    clearInterval(sampler);
    await sleep(1000);
    const seen = (await page.evaluate(() => (globalThis as unknown as { __seen: Record<string, number> }).__seen)) as Record<string, number>;
    const cdp = await page.context().newCDPSession(page);
    const heap = (await cdp.send("Runtime.getHeapUsage")) as { usedSize: number; totalSize: number };

    const lat: number[] = [];
    for (const [key, at] of appended) {
      const shown = seen[key];
      if (shown !== undefined) lat.push(shown - at);
    }
    lat.sort((a, b) => a - b);
    const cpu = cpuBefore !== undefined && cpuAfter !== undefined ? ((cpuAfter - cpuBefore) / elapsed) * 100 : undefined;
    const p99 = percentile(lat, 99);
    console.log(`lines appended ${appended.size}, shown ${lat.length} (${((lat.length / appended.size) * 100).toFixed(1)} %)`);
    console.log(`append → DOM: p50 ${percentile(lat, 50)} ms, p90 ${percentile(lat, 90)} ms, p99 ${p99} ms, max ${lat[lat.length - 1]} ms  [target p99 ≤ ${TARGETS.p99Ms} ms: ${verdict(p99 <= TARGETS.p99Ms)}]`);
    console.log(`dashboard server: cpu ${cpu === undefined ? "?" : cpu.toFixed(1)} % of a core  [target ≤ ${TARGETS.cpuPercent} %: ${verdict(cpu !== undefined && cpu <= TARGETS.cpuPercent)}], rss peak ${mb(peakRss)}, VmHWM ${mb(peakRssBytes(dash.pid!))}`);
    console.log(`page JS heap: used ${mb(heap.usedSize)} of ${mb(heap.totalSize)}`);
    console.log(`load average after ${load()}`);
    return p99 <= TARGETS.p99Ms && cpu !== undefined && cpu <= TARGETS.cpuPercent ? 0 : 1;
  } finally {
    await browser.close();
    for (const s of sessions) s.client.close();
    if (dash.exitCode === null && dash.pid !== undefined) process.kill(dash.pid, "SIGTERM");
    await target.stop();
  }
}
