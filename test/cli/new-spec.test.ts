import { describe, expect, test } from "vitest";
import { dependencySpec } from "../../cli/project.ts";

describe("cohesix new --cohesix SPEC", () => {
  test("a tarball path typed relative to the current folder becomes a file: path relative to the project", () => {
    expect(dependencySpec("./cohesix-0.1.0.tgz", "/home/me/my-appliance", "/home/me/cohesix")).toBe("file:../cohesix/cohesix-0.1.0.tgz");
    expect(dependencySpec("../cohesix", "/home/me/src/app", "/home/me/src/tools")).toBe("file:../cohesix");
    expect(dependencySpec("file:./cohesix-0.1.0.tgz", "/home/me/app", "/home/me/app")).toBe("file:./cohesix-0.1.0.tgz");
  });

  test("a registry range and an absolute path stay as given", () => {
    expect(dependencySpec("^0.1.0", "/home/me/app", "/home/me")).toBe("^0.1.0");
    expect(dependencySpec("file:/opt/cohesix-0.1.0.tgz", "/home/me/app", "/home/me")).toBe("file:/opt/cohesix-0.1.0.tgz");
    expect(dependencySpec("/opt/cohesix-0.1.0.tgz", "/home/me/app", "/home/me")).toBe("/opt/cohesix-0.1.0.tgz");
  });
});
