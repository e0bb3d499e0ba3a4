/**
 * `cohesix dashboard` over raw HTTP against a host-board appliance: the
 * one-time login, 401 without a session, 403 for a cross-origin request,
 * a non-loopback listen refused at start, bad input answered with one clear
 * message while the server keeps running, and the live event stream.
 */
import { request as httpRequest } from "node:http";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { cohesix, makeScratch, serve, type Scratch, type Served } from "../cli/helpers.ts";
import { waitFor } from "../cli/appliance-helpers.ts";
import { postCtl, signIn, startDashboardChild, type DashboardChild } from "./helpers.ts";

let scratch: Scratch;
let served: Served;
let dash: DashboardChild;
let cookie: string;

beforeAll(async () => {
  scratch = await makeScratch();
  served = await serve(scratch);
  dash = await startDashboardChild(scratch, ["--addr", served.addr]);
  cookie = await signIn(dash);
});

afterAll(async () => {
  await dash?.stop();
  await served?.stop();
  await scratch?.remove();
});

const state = async (): Promise<{ appliances: { id: string; live: string; workers: { id: string; status: string }[] }[] }> => {
  const res = await fetch(`${dash.url}api/state`, { headers: { cookie } });
  expect(res.status).toBe(200);
  return (await res.json()) as { appliances: { id: string; live: string; workers: { id: string; status: string }[] }[] };
};

describe("cohesix dashboard: the session", () => {
  test("prints READY with the port it bound, then a one-time login URL on the same host", () => {
    expect(dash.url).toMatch(/^http:\/\/127\.0\.0\.1:[1-9][0-9]*\/$/);
    expect(dash.loginUrl).toMatch(new RegExp(`^${dash.url.replace(/[.]/g, "\\.")}login\\?token=[A-Za-z0-9_-]{43}$`));
  });

  test("answers 401 to the page, the state and the event stream without the session cookie", async () => {
    for (const path of ["", "api/state", "api/events", "app.js"]) {
      const res = await fetch(`${dash.url}${path}`);
      expect(res.status, path).toBe(401);
      await res.body?.cancel();
    }
    const post = await fetch(`${dash.url}api/ctl`, { method: "POST", headers: { origin: dash.origin, "content-type": "application/json" }, body: "{}" });
    expect(post.status).toBe(401);
  });

  test("swaps the token for an HttpOnly, SameSite=Strict cookie, once: the same link again is 401", async () => {
    const fresh = await startDashboardChild(scratch, ["--addr", served.addr]);
    try {
      const first = await fetch(fresh.loginUrl, { redirect: "manual" });
      expect(first.status).toBe(303);
      expect(first.headers.get("location")).toBe("/");
      const setCookie = first.headers.get("set-cookie")!;
      expect(setCookie).toMatch(/^cohesix_dash=[A-Za-z0-9_-]+;/);
      expect(setCookie).toContain("HttpOnly");
      expect(setCookie).toContain("SameSite=Strict");
      const again = await fetch(fresh.loginUrl, { redirect: "manual" });
      expect(again.status).toBe(401);
      const wrong = await fetch(fresh.loginUrl.replace(/token=.*/, "token=guess"), { redirect: "manual" });
      expect(wrong.status).toBe(401);
      const page = await fetch(fresh.url, { headers: { cookie: setCookie.split(";")[0]! } });
      expect(page.status).toBe(200);
      expect(await page.text()).toContain('<script type="module" src="/app.js">');
    } finally {
      await fresh.stop();
    }
  });

  test("refuses a cross-origin POST, a POST without Origin and a foreign Host with 403, and the command does not run", async () => {
    const body = JSON.stringify({ appliance: served.addr, command: { spawn: "heartbeat", ticks: 5 } });
    const before = (await state()).appliances[0]!.workers.length;
    const cross = await fetch(`${dash.url}api/ctl`, { method: "POST", headers: { cookie, origin: "http://evil.example", "content-type": "application/json" }, body });
    expect(cross.status).toBe(403);
    expect(((await cross.json()) as { error: string }).error).toMatch(/^permission: cross-origin request from http:\/\/evil\.example refused/);
    const none = await fetch(`${dash.url}api/ctl`, { method: "POST", headers: { cookie, "content-type": "application/json" }, body });
    expect(none.status).toBe(403);
    // fetch() does not let a caller set Host: a plain request does, as a rebound DNS name would.
    const rebound = await new Promise<number>((resolve, reject) => {
      const req = httpRequest(`${dash.url}api/state`, { headers: { cookie, host: "attacker.example:80" } }, (res) => {
        res.resume();
        resolve(res.statusCode!);
      });
      req.on("error", reject);
      req.end();
    });
    expect(rebound).toBe(403);
    expect((await cohesix(["cat", "/proc/workers", "--addr", served.addr, "--key", scratch.queenKey], { env: scratch.env })).stdout.trim().split("\n").filter(Boolean).length).toBe(before);
  });

  test("the state carries the root task's CPU share, from two readings of /proc/mem", async () => {
    await waitFor("a CPU share", async () => {
      const res = await fetch(`${dash.url}api/state`, { headers: { cookie } });
      const cpu = ((await res.json()) as { appliances: { cpu?: string }[] }).appliances[0]!.cpu;
      return cpu !== undefined && /^[0-9]+\.[0-9] %$/.test(cpu);
    });
  });

  test("refuses a non-loopback --listen without TLS at start, naming what it needs", async () => {
    const r = await cohesix(["dashboard", "--addr", served.addr, "--key", scratch.queenKey, "--listen", "0.0.0.0:0"], { env: scratch.env });
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/permission: --listen 0\.0\.0\.0:0 is not loopback: .*--tls-key, --tls-cert and --token-file/);
    expect(r.stdout).not.toContain("READY");
  });
});

describe("cohesix dashboard: POST /api/ctl", () => {
  test("a spawn starts a worker on the appliance, and the audit line goes to stderr", async () => {
    const r = await postCtl(dash, cookie, { appliance: served.addr, command: { spawn: "heartbeat", ticks: 100 } });
    expect(r.status).toBe(200);
    expect(r.body.ok).toBe(true);
    const id = (JSON.parse(r.body.result!) as { worker: string }).worker;
    expect(id).toMatch(/^worker-[0-9]+$/);
    const workers = (await cohesix(["cat", "/proc/workers", "--addr", served.addr, "--key", scratch.queenKey], { env: scratch.env })).stdout;
    expect(workers).toContain(`id=${id} `);
    await waitFor("the audit line", () => dash.stderr.some((l) => l.includes(`dashboard ok ${served.addr} {"spawn":"heartbeat","ticks":100}`)));
  });

  test.each([
    ["not JSON", "{spawn", 400, /^invalid: the request is not JSON: /],
    ["an unknown field", { appliance: "x", command: {}, extra: 1 }, 400, /^invalid: the request: unknown field "extra"/],
    ["an unknown command", { appliance: "$ADDR", command: { reboot: true } }, 400, /^invalid: unknown command "reboot" \(expected spawn, kill, lifecycle or vm\)$/],
    ["malformed ticks", { appliance: "$ADDR", command: { spawn: "heartbeat", ticks: "ten" } }, 400, /^invalid: spawn: ticks must be a positive whole number, got "ten"$/],
    ["a lease without its memory", { appliance: "$ADDR", command: { spawn: "gpu", lease: { gpu_id: "GPU-0" } } }, 400, /^invalid: spawn: lease\.mem_mb must be a positive whole number, got undefined$/],
    ["a program the appliance does not carry", { appliance: "$ADDR", command: { spawn: "miner" } }, 404, /^not found: spawn: .* carries no program "miner" \(it carries .*heartbeat/],
    ["an unknown worker", { appliance: "$ADDR", command: { kill: "worker-999" } }, 404, /^not found: kill: .* runs no worker worker-999$/],
    ["a bad worker id", { appliance: "$ADDR", command: { kill: "../etc" } }, 400, /^invalid: kill takes a worker id such as worker-3/],
    ["an unknown appliance", { appliance: "tcp!10.9.9.9!1", command: { kill: "worker-1" } }, 404, /^not found: no appliance "tcp!10\.9\.9\.9!1" on this dashboard/],
    ["a kill switch on a host board", { appliance: "$ADDR", command: { vm: "pause" } }, 503, /^closed: .* is not a VM that cohesix boot or up runs: it has no kill switch$/],
  ])("%s is one clear error, and the server keeps running", async (_what, body, status, message) => {
    const b = typeof body === "string" ? body : JSON.parse(JSON.stringify(body).replace("$ADDR", served.addr));
    const r = await postCtl(dash, cookie, b);
    expect(r.status).toBe(status);
    expect(r.body.ok).toBe(false);
    expect(r.body.error).toMatch(message);
    expect(r.body.error).not.toContain("\n");
    expect((await state()).appliances[0]!.live).toBe("live");
  });

  test("a body over max_body_bytes is 413, before it is parsed", async () => {
    const r = await postCtl(dash, cookie, JSON.stringify({ appliance: served.addr, command: { spawn: "heartbeat" }, pad: "x".repeat(20_000) }));
    expect(r.status).toBe(413);
    expect(r.body.error).toMatch(/^too big: the request body is [0-9]+ bytes, more than 16384 \(max_body_bytes\)$/);
    expect((await state()).appliances[0]!.live).toBe("live");
  });

  test("cordon and resume go to the lifecycle ctl file", async () => {
    const cordon = await postCtl(dash, cookie, { appliance: served.addr, command: { lifecycle: "cordon" } });
    expect(cordon.body).toMatchObject({ ok: true });
    expect(JSON.parse(cordon.body.result!)).toMatchObject({ ok: true, cordoned: true });
    const resume = await postCtl(dash, cookie, { appliance: served.addr, command: { lifecycle: "resume" } });
    expect(JSON.parse(resume.body.result!)).toMatchObject({ ok: true, cordoned: false });
  });
});

describe("cohesix dashboard: the event stream", () => {
  test("starts with hello and pushes a spawned worker's telemetry as it is appended", async () => {
    const spawned = await cohesix(["spawn", "heartbeat", "--ticks", "50", "--addr", served.addr, "--key", scratch.queenKey], { env: scratch.env });
    const id = spawned.stdout.trim();
    const abort = new AbortController();
    const res = await fetch(`${dash.url}api/events`, { headers: { cookie }, signal: abort.signal });
    expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const reader = res.body!.getReader();
    let text = "";
    try {
      await waitFor(`telemetry of ${id} on the stream`, async () => {
        const { value } = await reader.read();
        text += new TextDecoder().decode(value);
        return text.includes("event: hello\n") && new RegExp(`event: telemetry\\ndata: \\{"type":"telemetry","app":"[^"]+","worker":"${id}"`).test(text);
      });
    } finally {
      abort.abort();
    }
  });
});

describe("cohesix dashboard: an appliance under --policy signed-ctl", () => {
  test("spawn, kill and cordon from /api/ctl arrive as envelopes signed on the server with the queen key", async () => {
    const strict = await serve(scratch, ["--policy", "signed-ctl"], { state: `${scratch.dir}/strict-state` });
    const d = await startDashboardChild(scratch, ["--addr", strict.addr]);
    try {
      const c = await signIn(d);
      await waitFor("the appliance live", async () => ((await (await fetch(`${d.url}api/state`, { headers: { cookie: c } })).json()) as { appliances: { live: string }[] }).appliances[0]!.live === "live");
      const spawned = await postCtl(d, c, { appliance: strict.addr, command: { spawn: "heartbeat", ticks: 100 } });
      expect(spawned.body.ok, spawned.body.error).toBe(true);
      const id = (JSON.parse(spawned.body.result!) as { worker: string }).worker;
      const cordon = await postCtl(d, c, { appliance: strict.addr, command: { lifecycle: "cordon" } });
      expect(cordon.body.ok, cordon.body.error).toBe(true);
      await waitFor(`${id} listed`, async () => ((await (await fetch(`${d.url}api/state`, { headers: { cookie: c } })).json()) as { appliances: { workers: { id: string }[] }[] }).appliances[0]!.workers.some((w) => w.id === id));
      const killed = await postCtl(d, c, { appliance: strict.addr, command: { kill: id } });
      expect(killed.body.ok, killed.body.error).toBe(true);
      const resumed = await postCtl(d, c, { appliance: strict.addr, command: { lifecycle: "resume" } });
      expect(resumed.body.ok, resumed.body.error).toBe(true);
      // The appliance took each as an envelope: the same command unsigned is refused there.
      const unsigned = await cohesix(["ctl", "--unsigned", '{"spawn":"heartbeat"}', "--addr", strict.addr, "--key", scratch.queenKey], { env: scratch.env });
      expect(unsigned.exitCode).toBe(1);
      expect(unsigned.stderr).toMatch(/^invalid: policy signed-ctl: wrap the /);
    } finally {
      await d.stop();
      await strict.stop();
    }
  });
});
