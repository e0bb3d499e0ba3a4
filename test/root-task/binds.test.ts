/**
 * The path a bind really reaches, as the namespace walks it, and the
 * protected roots no bind may cover.
 */
import { describe, expect, test } from "vitest";
import { protectedTarget, realPath } from "../../root-task/binds.ts";
import { applyCommit, genesis, parseQueenCommand } from "../../root-task/index.ts";

describe("realPath()", () => {
  test("follows a bind on a prefix of the path", () => {
    expect(realPath([{ from: "/worker/worker-1", to: "/w1" }], "/w1/telemetry")).toBe("/worker/worker-1/telemetry");
    expect(realPath([{ from: "/worker/worker-1", to: "/w1" }], "/proc/boot")).toBe("/proc/boot");
  });

  test("follows chains, and a bind inside a bound directory only where it is named", () => {
    const binds = [
      { from: "/log", to: "/a" },
      { from: "/a", to: "/b" },
    ];
    expect(realPath(binds, "/b/queen.log")).toBe("/log/queen.log");
    expect(realPath([{ from: "/a", to: "/w" }, { from: "/c", to: "/a/x" }], "/w/x/y")).toBe("/a/x/y");
  });

  test("refuses a loop past 8 binds", () => {
    expect(() => realPath([{ from: "/b", to: "/a" }, { from: "/a", to: "/b" }], "/a/x")).toThrow(/^invalid: bind loop/);
  });
});

describe("protectedTarget()", () => {
  test("names /queen, /proc and /log and what is inside them, and nothing else", () => {
    expect(protectedTarget("/queen")).toBe("/queen");
    expect(protectedTarget("/proc/boot")).toBe("/proc");
    expect(protectedTarget("/log/x")).toBe("/log");
    expect(protectedTarget("/queenly")).toBeUndefined();
    expect(protectedTarget("/w1")).toBeUndefined();
  });
});

describe("unbind", () => {
  test("parses as a path and removes the bind from the replayed state", () => {
    expect(parseQueenCommand('{"unbind":"/w1/"}')).toEqual({ kind: "unbind", to: "/w1" });
    expect(() => parseQueenCommand('{"unbind":"/"}')).toThrow(/^invalid: unbind must name a bind's target/);
    expect(() => parseQueenCommand('{"unbind":{"to":"/w1"}}')).toThrow(/^invalid: unbind must be a non-empty string/);
    const bound = applyCommit(genesis, { kind: "bind", body: { from: "/log", to: "/w1" } });
    expect(applyCommit(bound, { kind: "unbind", body: { to: "/w1" } }).binds).toEqual([]);
  });
});
