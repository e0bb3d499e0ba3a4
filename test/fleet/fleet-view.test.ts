import { describe, expect, test } from "vitest";
import { type FleetRecord, FleetView, encodeRecord, parseSelectors, topicFor } from "../../fleet/index.ts";

const head = { v: 1, historical: false } as const;
const birth = (id: string, session: number, extra: Partial<Record<string, unknown>> = {}): FleetRecord =>
  ({ ...head, kind: "birth", id, seq: 10, ts_ms: session, session, version: "0.1.0", boot: { board: "aarch64-virt" }, lifecycle: "ONLINE", backlog: 3, ...extra }) as FleetRecord;
const death = (id: string, session: number, ts_ms = session + 5): FleetRecord => ({ ...head, kind: "death", id, seq: 10, ts_ms, session, reason: "connection lost" });
const audit = (id: string, seq: number, historical = false): FleetRecord => ({ ...head, historical, kind: "audit", id, seq, ts_ms: 1000 + seq, line: `line ${seq}` });

function feed(view: FleetView, r: FleetRecord, retained = false) {
  return view.add(topicFor("cohesix", r as FleetRecord & { worker?: string }), encodeRecord(r), { retained });
}

describe("FleetView", () => {
  test("an appliance is live while its death's session is below its birth's, and dead once a death of that session or later is retained", () => {
    const view = new FleetView();
    feed(view, death("app-1", 100), true);
    feed(view, birth("app-1", 200), true);
    expect(view.get("app-1")).toMatchObject({ live: true, version: "0.1.0", lifecycle: "ONLINE", backlog: 3, session: 200 });
    feed(view, death("app-1", 200, 250));
    expect(view.get("app-1")).toMatchObject({ live: false, reason: "connection lost", lastSeenMs: 250 });
    feed(view, birth("app-1", 300, { backlog: 0 }));
    expect(view.get("app-1")).toMatchObject({ live: true, backlog: 0, reason: undefined });
  });

  test("an older birth or death arriving late does not replace a newer one", () => {
    const view = new FleetView();
    feed(view, birth("app-1", 300));
    feed(view, birth("app-1", 200, { version: "old" }));
    feed(view, death("app-1", 100));
    expect(view.get("app-1")).toMatchObject({ live: true, version: "0.1.0", session: 300 });
  });

  test("a stream record seen again by (id, seq) is a duplicate; another appliance's same seq is not", () => {
    const view = new FleetView();
    expect(feed(view, audit("app-1", 1))).toMatchObject({ kind: "record", duplicate: false });
    expect(feed(view, audit("app-1", 2))).toMatchObject({ duplicate: false });
    expect(feed(view, audit("app-1", 1))).toMatchObject({ duplicate: true });
    expect(feed(view, audit("app-1", 2, true))).toMatchObject({ duplicate: true });
    expect(feed(view, audit("app-2", 1))).toMatchObject({ duplicate: false });
  });

  test("a birth published again in the same session (a newer counter) keeps duplicates out; a new session whose seqs start over lets them in again", () => {
    const view = new FleetView();
    feed(view, birth("app-1", 100, { seq: 2 }));
    for (const seq of [3, 4, 5]) feed(view, audit("app-1", seq));
    expect(feed(view, birth("app-1", 100, { seq: 2, ctr: 7 }))).toMatchObject({ kind: "record" });
    expect(view.get("app-1")?.ctr).toBe(7);
    expect(feed(view, audit("app-1", 4))).toMatchObject({ duplicate: true });
    feed(view, birth("app-1", 200, { seq: 0 }));
    expect(feed(view, audit("app-1", 1))).toMatchObject({ duplicate: false });
  });

  test("a lifecycle record updates the appliance's lifecycle", () => {
    const view = new FleetView();
    feed(view, birth("app-1", 1));
    feed(view, { ...head, kind: "lifecycle", id: "app-1", seq: 11, ts_ms: 5, state: "DRAINING", reason: "cordon" });
    expect(view.get("app-1")?.lifecycle).toBe("DRAINING");
  });

  test("list() holds only appliances with a birth or death, sorted by id", () => {
    const view = new FleetView();
    feed(view, audit("app-9", 1));
    feed(view, birth("app-2", 1));
    feed(view, death("app-1", 1));
    expect(view.list().map((a) => [a.id, a.live])).toEqual([
      ["app-1", false],
      ["app-2", true],
    ]);
  });

  test("hostile messages are ignored with the reason: bad JSON, a record on another appliance's topic, a topic outside the tree, too many appliances", () => {
    const view = new FleetView({ maxAppliances: 2 });
    expect(view.add("cohesix/app-1/birth", Buffer.from("{nope"))).toMatchObject({ kind: "ignored", why: expect.stringMatching(/not JSON/) });
    expect(view.add("cohesix/app-2/birth", encodeRecord(birth("app-1", 1)))).toMatchObject({ kind: "ignored", why: expect.stringMatching(/wrong topic/) });
    expect(view.add("other/app-1/birth", encodeRecord(birth("app-1", 1)))).toMatchObject({ kind: "ignored" });
    expect(view.add("cohesix/app-1/cmd", Buffer.from("{}"))).toMatchObject({ kind: "ignored", why: "cmd topic" });
    expect(view.add("cohesix/app-1/birth", Buffer.alloc(70_000, 32))).toMatchObject({ kind: "ignored", why: expect.stringMatching(/too big|exceeds/) });
    feed(view, birth("app-1", 1));
    feed(view, birth("app-2", 1));
    expect(feed(view, birth("app-3", 1))).toMatchObject({ kind: "ignored", why: "more than 2 appliances: app-3 is not tracked" });
    expect(view.size).toBe(2);
  });

  test("selectors match birth facts: id, version, lifecycle, live and /proc/boot keys, all of them", () => {
    const view = new FleetView();
    feed(view, birth("app-1", 1, { boot: { board: "rpi4", slot: "a" } }));
    feed(view, birth("app-2", 1, { version: "0.2.0" }));
    const ids = (s: string[]) => view.list().filter(parseSelectors(s)).map((a) => a.id);
    expect(ids(["board=rpi4"])).toEqual(["app-1"]);
    expect(ids(["version=0.2.0"])).toEqual(["app-2"]);
    expect(ids(["live=true", "lifecycle=ONLINE"])).toEqual(["app-1", "app-2"]);
    expect(ids(["board=rpi4", "slot=b"])).toEqual([]);
    expect(ids(["id=app-2"])).toEqual(["app-2"]);
    expect(() => parseSelectors(["board"])).toThrow("invalid: fleet: selector \"board\" must be KEY=VALUE, e.g. board=aarch64-virt");
  });
});
