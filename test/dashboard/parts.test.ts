/**
 * The dashboard server's parts on their own: the event hub drops a slow
 * page instead of buffering without end, the login token works once, the
 * limits parse, and the `/proc` readers.
 */
import { EventEmitter } from "node:events";
import type { IncomingMessage, ServerResponse } from "node:http";
import { describe, expect, test } from "vitest";
import { Auth, DEFAULT_LIMITS, fleetIdOf, EventHub, budgetLeft, bootPairs, checkRequest, cookieOf, limitsOf, parseListen, parseWorkers, isLoopback } from "../../dashboard/index.ts";

/** A response that never drains: what it was handed stays in writableLength. */
class StuckResponse extends EventEmitter {
  writableLength = 0;
  destroyed = false;
  writeHead(): this {
    return this;
  }
  flushHeaders(): void {}
  write(text: string): boolean {
    this.writableLength += Buffer.byteLength(text);
    return false;
  }
  destroy(): void {
    this.destroyed = true;
    this.emit("close");
  }
}

describe("EventHub", () => {
  test("drops a page whose stream holds stream_buffer_bytes unsent, and keeps serving the others", () => {
    const hub = new EventHub({ limits: { ...DEFAULT_LIMITS, stream_buffer_bytes: 4096 } });
    const slow = new StuckResponse();
    const fast = new StuckResponse();
    hub.open(slow as unknown as ServerResponse, { type: "audit", entry: { ts: "t", appliance: "a", command: "{}", ok: true, result: "" } });
    hub.open(fast as unknown as ServerResponse, { type: "audit", entry: { ts: "t", appliance: "a", command: "{}", ok: true, result: "" } });
    for (let i = 0; i < 100; i++) {
      hub.publish({ type: "log", app: "a", lines: ["x".repeat(100)] });
      fast.writableLength = 0; // this page reads
    }
    expect(slow.destroyed).toBe(true);
    expect(slow.writableLength).toBeLessThanOrEqual(4096);
    expect(fast.destroyed).toBe(false);
    expect(hub.size).toBe(1);
    expect(hub.dropped).toBe(1);
    hub.close();
  });

  test("is full at max_streams", () => {
    const hub = new EventHub({ limits: { ...DEFAULT_LIMITS, max_streams: 1 } });
    expect(hub.full).toBe(false);
    hub.open(new StuckResponse() as unknown as ServerResponse, { type: "log", app: "a", lines: [] });
    expect(hub.full).toBe(true);
    hub.close();
  });
});

describe("Auth", () => {
  test("the login token opens one session, once; a wrong token opens none", () => {
    const auth = new Auth({ limits: DEFAULT_LIMITS });
    expect(auth.redeem("not-the-token")).toBeUndefined();
    const cookie = auth.redeem(auth.token)!;
    expect(cookie).toMatch(/^cohesix_dash=[A-Za-z0-9_-]{43}; HttpOnly; SameSite=Strict; Path=\/; Max-Age=43200$/);
    expect(auth.redeem(auth.token)).toBeUndefined();
    const req = { headers: { cookie: `other=1; ${cookie.split(";")[0]}` } } as unknown as IncomingMessage;
    expect(auth.signedIn(req)).toBe(true);
    expect(auth.signedIn({ headers: { cookie: "cohesix_dash=forged" } } as unknown as IncomingMessage)).toBe(false);
  });

  test("keeps at most max_sessions sessions, dropping the oldest", () => {
    const auth = new Auth({ limits: { ...DEFAULT_LIMITS, max_sessions: 2 } });
    const ids = [auth.open(), auth.open(), auth.open()].map((c) => ({ headers: { cookie: c.split(";")[0] } }) as unknown as IncomingMessage);
    expect(ids.map((r) => auth.signedIn(r))).toEqual([false, true, true]);
  });

  test("checkRequest lets GETs through and wants a POST's Origin to be the page's own", () => {
    const check = { hosts: new Set(["127.0.0.1:8080"]), scheme: "http" as const };
    const req = (method: string, headers: Record<string, string>) => ({ method, headers: { host: "127.0.0.1:8080", ...headers } }) as unknown as IncomingMessage;
    expect(checkRequest(req("GET", {}), check)).toBeUndefined();
    expect(checkRequest(req("POST", { origin: "http://127.0.0.1:8080" }), check)).toBeUndefined();
    expect(checkRequest(req("POST", { origin: "http://127.0.0.1:8081" }), check)?.status).toBe(403);
    expect(checkRequest(req("POST", { origin: "http://127.0.0.1:8080", "sec-fetch-site": "cross-site" }), check)?.status).toBe(403);
    expect(checkRequest(req("GET", { host: "evil.example:8080" }), check)?.status).toBe(403);
    expect(cookieOf("a=1; b = 2", "b")).toBe("2");
  });
});

describe("limits and listen addresses", () => {
  test("limitsOf applies NAME=N over the defaults and refuses an unknown name or a zero", () => {
    expect(limitsOf(["max_streams=4"])).toEqual({ ...DEFAULT_LIMITS, max_streams: 4 });
    expect(() => limitsOf(["max_stream=4"])).toThrow(/^invalid: dashboard limit "max_stream=4": expected NAME=N with NAME one of max_body_bytes/);
    expect(() => limitsOf(["max_streams=0"])).toThrow(/not a positive integer/);
  });

  test("parseListen and isLoopback", () => {
    expect(parseListen("127.0.0.1:0")).toEqual({ host: "127.0.0.1", port: 0 });
    expect(parseListen("[::1]:80")).toEqual({ host: "::1", port: 80 });
    expect(() => parseListen("8080")).toThrow(/expected HOST:PORT/);
    expect(["127.0.0.1", "127.3.4.5", "::1", "localhost"].every(isLoopback)).toBe(true);
    expect(["0.0.0.0", "10.0.2.15", "::", "example.com"].some(isLoopback)).toBe(false);
  });
});

describe("/proc readers", () => {
  test("parseWorkers reads each record and what is left of its budget", () => {
    const [w] = parseWorkers("id=worker-1 kind=heartbeat role=worker-heartbeat status=running pid=1 ticks=3 ops=7 budget_ticks=1000 budget_ops=500 ttl_s=120 restart=false restarts=2 stale=false\n");
    expect(w).toMatchObject({ id: "worker-1", kind: "heartbeat", role: "worker-heartbeat", status: "running", restarts: 2, budgetLeft: "ticks 997/1000 · ops 493/500 · ttl 120 s" });
    expect(budgetLeft({ budget_ticks: "-", budget_ops: "-", ttl_s: "-" })).toBe("unbounded");
  });

  test("fleetIdOf reads the id of /proc/boot's fleet= line", () => {
    expect(fleetIdOf(bootPairs("fleet=mqtt://10.0.2.2:1883 id=app-1\n"))).toBe("app-1");
    expect(fleetIdOf({})).toBeUndefined();
  });

  test("bootPairs keeps values with spaces", () => {
    expect(bootPairs("cohesix 0.1.0\nkernel=Linux 6.1.0 aarch64\nboard=host\n")).toEqual({ kernel: "Linux 6.1.0 aarch64", board: "host" });
  });
});
