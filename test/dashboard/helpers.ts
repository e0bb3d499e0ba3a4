/**
 * Helpers for the dashboard's suites: a `cohesix dashboard` child on an
 * ephemeral 127.0.0.1 port (stopped by PID), signed in once with its
 * one-time login URL, and requests that carry the session cookie and the
 * page's own Origin.
 */
import { execa, type ResultPromise } from "execa";
import { createInterface } from "node:readline";
import { BIN, ROOT, type Scratch } from "../cli/helpers.ts";

/** A running `cohesix dashboard`. */
export interface DashboardChild {
  readonly child: ResultPromise;
  readonly pid: number;
  /** `http://127.0.0.1:PORT/` */
  readonly url: string;
  /** The page's origin, `http://127.0.0.1:PORT`. */
  readonly origin: string;
  readonly loginUrl: string;
  /** Every stderr line so far (the audit lines go there). */
  readonly stderr: string[];
  stop(): Promise<Awaited<ResultPromise>>;
}

/** Starts `cohesix dashboard ARGS… --listen 127.0.0.1:0` and waits for its READY and login lines. */
export async function startDashboardChild(scratch: Pick<Scratch, "queenKey" | "env">, args: readonly string[], options: { env?: Record<string, string> } = {}): Promise<DashboardChild> {
  const base = { ...process.env };
  delete base.COHESIX_ADDR;
  delete base.COHESIX_KEY;
  const child = execa("node", [BIN, "dashboard", "--listen", "127.0.0.1:0", "--key", scratch.queenKey, ...args], {
    cwd: ROOT,
    env: { ...base, ...scratch.env, ...options.env },
    extendEnv: false,
    reject: false,
  });
  const pid = child.pid!;
  const stderr: string[] = [];
  createInterface({ input: child.stderr! }).on("line", (l) => stderr.push(l));
  const lines: string[] = [];
  const ready = new Promise<void>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on("line", (line) => {
      lines.push(line);
      if (lines.length === 2) resolve();
    });
    void child.then((r) => reject(new Error(`cohesix dashboard exited ${r.exitCode} before READY: ${r.stderr}`)));
    setTimeout(() => reject(new Error("cohesix dashboard printed no READY line within 20 s")), 20_000).unref();
  });
  try {
    await ready;
  } catch (err) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {}
    throw err;
  }
  const url = lines[0]!.replace(/^READY /, "");
  return {
    child,
    pid,
    url,
    origin: url.replace(/\/$/, ""),
    loginUrl: lines[1]!,
    stderr,
    async stop() {
      if (child.exitCode === null) process.kill(pid, "SIGTERM");
      return child;
    },
  };
}

/** Swaps the login URL's token for the session cookie (`name=value`). */
export async function signIn(dash: DashboardChild): Promise<string> {
  const res = await fetch(dash.loginUrl, { redirect: "manual" });
  if (res.status !== 303) throw new Error(`login answered ${res.status}`);
  return res.headers.get("set-cookie")!.split(";")[0]!;
}

/** Posts a command for an appliance as the page does: cookie, Origin, JSON. */
export async function postCtl(dash: DashboardChild, cookie: string, body: unknown): Promise<{ status: number; body: { ok: boolean; result?: string; error?: string } }> {
  const res = await fetch(`${dash.url}api/ctl`, {
    method: "POST",
    headers: { cookie, origin: dash.origin, "content-type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as { ok: boolean; result?: string; error?: string } };
}
