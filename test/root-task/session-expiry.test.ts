/**
 * A session does not outlive its ticket: once the ticket is past its
 * expiry (exp plus the skew attach allows), every request of the session
 * answers `closed: ticket expired …` and changes nothing, and a timer ends
 * an idle session at the expiry, also for expiries beyond setTimeout's
 * 2^31 ms.
 */
import { afterEach, describe, expect, test, vi } from "vitest";
import { type Fid } from "../../nine-door/index.ts";
import { type RunningAppliance } from "../../root-task/index.ts";
import { SessionExpiry } from "../../root-task/session-expiry.ts";
import { waitFor } from "../cli/appliance-helpers.ts";
import { useAppliances } from "./fixture.ts";

const appliances = useAppliances({ prefix: "cohesix-expiry-" });
afterEach(() => {
  vi.useRealTimers();
});

/** An appliance whose clock runs `offset.ms` ahead of the system clock. */
async function start(offset: { ms: number }): Promise<RunningAppliance> {
  const clock = { now: () => Date.now() + offset.ms, sync: async () => undefined };
  return (await appliances.start({ clock })).app;
}

async function attachQueen(app: RunningAppliance, ttlS: number): Promise<Fid> {
  return appliances.attachQueen(app, { ttlS });
}

async function attempt(fn: () => Promise<unknown>): Promise<string> {
  try {
    await fn();
    return "ok";
  } catch (err) {
    return `Error: ${(err as Error).message}`;
  }
}

describe("a session past its ticket's expiry", () => {
  test("gets closed: ticket expired for a ctl write on a fid it opened in time, and nothing changes", async () => {
    const offset = { ms: 0 };
    const app = await start(offset);
    const root = await attachQueen(app, 1);
    const ctl = await root.walk("queen/ctl");
    await ctl.open("rw");
    const lifecycle = await root.walk("queen/lifecycle/ctl");
    await lifecycle.open("rw");
    expect(await attempt(() => ctl.write('{"budget":{"ops":5}}'))).toBe("ok");
    // 66 s later (past exp + 60 s skew), as in the report.
    offset.ms = 66_000;
    expect(await attempt(() => ctl.write('{"budget":{"ops":6}}'))).toMatch(/^Error: closed: ticket expired at /);
    expect(await attempt(() => lifecycle.write("cordon"))).toMatch(/^Error: closed: /);
    expect(app.app.state.defaults).toEqual({ ops: 5 });
    expect(app.app.state.cordoned).toBe(false);
    // A fresh ticket works, and the audit says why the old session ended.
    const fresh = await attachQueen(app, 300);
    const log = await fresh.readText("log/queen.log");
    expect(log).toMatch(/session of queen queen closed: ticket expired at /);
  });

  test("is ended by a timer at the expiry even when idle", { timeout: 30_000 }, async () => {
    // The ticket (1 s) stops attaching at exp + 60 s: start 59 s ahead, so that is ~2 s away.
    const offset = { ms: 59_000 };
    const app = await start(offset);
    await attachQueen(app, 1);
    expect(app.app.server.sessions).toHaveLength(1);
    await waitFor("the expired session to be dropped", () => app.app.server.sessions.length === 0, { timeoutMs: 20_000 });
  });
});

describe("SessionExpiry", () => {
  test("waits out an expiry beyond 2^31 ms without firing early, then revokes once", () => {
    vi.useFakeTimers({ now: 0 });
    const revoked: string[] = [];
    const expiry = new SessionExpiry({ now: () => Date.now(), skewS: 0, revoke: (_c, reason) => revoked.push(reason) });
    const thirtyDaysS = 30 * 24 * 3600;
    const session = expiry.watch({}, thirtyDaysS);
    vi.advanceTimersByTime(1000);
    expect(revoked).toEqual([]);
    vi.advanceTimersByTime(2 ** 31);
    expect(revoked).toEqual([]);
    expect(() => session.check()).not.toThrow();
    vi.advanceTimersByTime(thirtyDaysS * 1000);
    expect(revoked).toHaveLength(1);
    expect(revoked[0]).toMatch(/^ticket expired at 1970-01-31T00:00:00\.000Z/);
    expect(() => session.check()).toThrow(/^closed: ticket expired/);
    expect(expiry.armed).toBe(0);
  });

  test("a session that ends before its ticket lets go of its timer, and is never revoked", () => {
    vi.useFakeTimers({ now: 0 });
    const revoked: string[] = [];
    const expiry = new SessionExpiry({ now: () => Date.now(), skewS: 0, revoke: (_c, reason) => revoked.push(reason) });
    const sessions = Array.from({ length: 1000 }, () => expiry.watch({}, 24 * 3600));
    expect(expiry.armed).toBe(1000);
    for (const s of sessions) s.release();
    expect(expiry.armed).toBe(0);
    vi.advanceTimersByTime(2 * 24 * 3600 * 1000);
    expect(revoked).toEqual([]);
  });
});
