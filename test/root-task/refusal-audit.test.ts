/**
 * Refusal rate-limiting and aggregation: a source's refusals are written
 * in full while its bucket has tokens, then counted into one line per
 * window; sources past the tracked number share one line; so the lines
 * written are bounded however many refusals and sources there are.
 */
import { describe, expect, test } from "vitest";
import { RefusalAudit, peerSource } from "../../root-task/refusal-audit.ts";

const refusal = (peer: string) => ({ who: `peer ${peer}`, source: peerSource(peer), request: "Tattach", message: "permission: malformed ticket" });

describe("RefusalAudit", () => {
  test("writes a source's burst in full and counts the rest into one line at the window's end", () => {
    const lines: string[] = [];
    const audit = new RefusalAudit((l) => lines.push(l), { windowMs: 10_000, burst: 3 }, { now: () => 0 });
    for (let i = 0; i < 4815; i++) audit.report(refusal(`tcp!1.2.3.4!${1000 + (i % 50)}`));
    expect(lines).toEqual([1000, 1001, 1002].map((p) => `refused peer tcp!1.2.3.4!${p} Tattach: permission: malformed ticket`));
    audit.flush();
    expect(lines[3]).toBe("refused 4812 more attaches from tcp!1.2.3.4 in 10 s: permission: malformed ticket");
    expect(lines[4]).toBe("refused 4812 more requests without a ticket from 1 peer(s) in 10 s: counts in /log/refused.log");
    audit.close();
  });

  test("writes one more line per refill interval to a rate-limited source", () => {
    const lines: string[] = [];
    let now = 0;
    const audit = new RefusalAudit((l) => lines.push(l), { burst: 1, refillMs: 5000 }, { now: () => now });
    for (; now < 20_000; now += 10) audit.report(refusal("tcp!1.2.3.4!1"));
    // 1 burst + one per 5 s over 20 s.
    expect(lines).toHaveLength(1 + 3);
    audit.close();
  });

  test("writes a bounded number of lines per window, whatever the number of sources", () => {
    const lines: string[] = [];
    const audit = new RefusalAudit((l) => lines.push(l), { maxSources: 3, burst: 2 }, { now: () => 0 });
    for (let i = 0; i < 20_000; i++) audit.report(refusal(`tcp!10.0.${i % 250}.${i % 7}!${i}`));
    audit.flush();
    // 3 tracked sources × (2 in full + 1 count) + 1 "other peers" line + 1 total.
    expect(lines.length).toBeLessThanOrEqual(3 * 3 + 2);
    expect(lines.at(-1)).toMatch(/^refused 19994 more requests without a ticket from 3 peer\(s\) and 1024\+ other\(s\) in 10 s: counts in \/log\/refused\.log$/);
    expect(lines.at(-2)).toMatch(/^refused \d+ requests from 1024\+ other peers in 10 s \(past the 3 tracked\): last Tattach: permission: malformed ticket$/);
    audit.close();
  });

  test("peerSource() drops the port of a dial-string peer", () => {
    expect(peerSource("tcp!127.0.0.1!40211")).toBe("tcp!127.0.0.1");
    expect(peerSource("tls!::1!5640")).toBe("tls!::1");
    expect(peerSource("unix")).toBe("unix");
  });
});
