import { describe, expect, test } from "vitest";
import { childPath, isWithin, normalisePath, parentPath, pathNames } from "../../../nine-door/index.ts";

describe("namespace paths", () => {
  test("normalisePath gives one canonical form and says why it refuses", () => {
    expect(normalisePath("/worker//worker-3/./telemetry/")).toBe("/worker/worker-3/telemetry");
    expect(normalisePath("/a/b/../c")).toBe("/a/c");
    expect(() => normalisePath("/proc/../..")).toThrow("invalid: path climbs above the root: /proc/../..");
    expect(() => normalisePath("/..", { above: () => "walk above the root" })).toThrow("invalid: walk above the root");
    expect(() => normalisePath("proc")).toThrow('invalid: path is not absolute: "proc"');
    expect(() => normalisePath("/a\0b")).toThrow(/NUL byte/);
  });

  test("childPath, parentPath and pathNames agree with each other", () => {
    expect(childPath("/", "proc")).toBe("/proc");
    expect(childPath("/proc", "boot")).toBe("/proc/boot");
    expect(childPath("/proc/boot", "..")).toBe("/proc");
    expect(childPath("/proc", "..")).toBe("/");
    expect(() => childPath("/", "..")).toThrow("invalid: walk above the root");
    expect(parentPath("/worker/worker-1")).toBe("/worker");
    expect(parentPath("/")).toBe("/");
    expect(pathNames("/worker//worker-1")).toEqual(["worker", "worker-1"]);
    expect(pathNames("/")).toEqual([]);
  });

  test("isWithin counts a path as inside itself but not a sibling sharing its prefix", () => {
    expect(isWithin("/worker/worker-1/ctl", "/worker")).toBe(true);
    expect(isWithin("/worker", "/worker")).toBe(true);
    expect(isWithin("/workers", "/worker")).toBe(false);
    expect(isWithin("/anything", "/")).toBe(true);
  });
});
