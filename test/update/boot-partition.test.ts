import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { formatBootState, initialBootState, nextBootState, readBootStateFiles, writeBootStateFiles } from "../../update/index.ts";

describe("the boot state on a mounted boot partition", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "cohesix-bootpart-"));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("writes both copies, 512 bytes each, and reads the state back", async () => {
    const state = nextBootState(initialBootState({ other: "good" }), { try: "b", tries: 3, slots: { a: "good", b: "trying" } });
    await writeBootStateFiles(dir, state);
    for (const name of ["state.env", "state.bak"]) expect((await stat(join(dir, name))).size).toBe(512);
    expect(await readFile(join(dir, "state.env"))).toEqual(Buffer.from(formatBootState(state)));
    const read = await readBootStateFiles(dir);
    expect(read.state).toEqual(state);
    expect(read.from).toBe("state.env");
  });

  it("takes state.bak when state.env is torn, and reports why", async () => {
    const old = initialBootState({ other: "good" });
    await writeBootStateFiles(dir, old);
    const torn = Buffer.from(formatBootState(nextBootState(old, { active: "b" })));
    torn.fill(0, 40);
    await writeFile(join(dir, "state.env"), torn);
    const read = await readBootStateFiles(dir);
    expect(read.from).toBe("state.bak");
    expect(read.state).toEqual(old);
    expect(read.refused[0]).toMatch(/^state\.env: /);
  });

  it("reads no state from an empty partition, and writes both copies there", async () => {
    expect((await readBootStateFiles(dir)).state).toBeNull();
    await writeBootStateFiles(dir, initialBootState());
    expect((await readBootStateFiles(dir)).state).toEqual(initialBootState());
  });

  it("counts the sequence number up on every change", () => {
    const s = initialBootState();
    expect(nextBootState(s, { active: "b" }).seq).toBe(s.seq + 1);
  });
});
