/**
 * `cohesix gpu-bridge` as a process: one READY line, the default key made on
 * first use and usable for tickets, exit 0 on SIGTERM.
 */
import { execa } from "execa";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { describe, expect, it } from "vitest";
import { mintBridgeTicket } from "../../gpu-bridge/index.ts";
import { NineClient } from "../../nine-door/index.ts";
import { readPrivateKey } from "../../root-task/index.ts";
import { BIN, ROOT } from "../cli/helpers.ts";

describe("cohesix gpu-bridge", () => {
  it("prints one READY line, pairs through the default bridge key, and exits 0 on SIGTERM", async () => {
    const dir = await mkdtemp(join(tmpdir(), "cohesix-gpu-cli-"));
    const env = { ...process.env, XDG_CONFIG_HOME: join(dir, "config"), PATH: "/usr/bin:/bin" };
    const child = execa(process.execPath, [BIN, "gpu-bridge", "--listen", "127.0.0.1:0", "--backend", "auto"], { cwd: ROOT, env, extendEnv: false, reject: false });
    try {
      const lines: string[] = [];
      const addr = await new Promise<string>((resolve, reject) => {
        createInterface({ input: child.stdout! }).on("line", (line) => {
          lines.push(line);
          if (line.startsWith("READY ")) resolve(line.slice(6));
        });
        void child.then((r) => reject(new Error(`exited ${r.exitCode} before READY: ${String(r.stderr)}`)));
      });
      expect(addr).toMatch(/^tcp!127\.0\.0\.1!\d+$/);
      const key = await readPrivateKey(join(dir, "config", "cohesix", "bridge.key"));
      const client = await NineClient.dial(addr);
      const top = await client.attach({ uname: "bridge", aname: mintBridgeTicket(key) });
      expect((await top.list("")).map((f) => f.name)).toEqual(["GPU-0", "GPU-1"]);
      client.close();
      process.kill(child.pid!, "SIGTERM");
      const result = await child;
      expect(result.exitCode).toBe(0);
      expect(lines.filter((l) => l.startsWith("READY"))).toHaveLength(1);
      expect(String(result.stderr)).toMatch(/gpu-bridge: made bridge key .*bridge\.key/);
      expect(String(result.stderr)).toMatch(/gpu-bridge: backend sim: nvidia-smi not found.*using the simulated GPUs/);
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("refuses a bad --backend and a missing --listen as usage errors", async () => {
    const a = await execa("node", [BIN, "gpu-bridge", "--listen", "127.0.0.1:0", "--backend", "cuda"], { cwd: ROOT, reject: false });
    expect(a.exitCode).toBe(2);
    expect(a.stderr).toMatch(/--backend must be auto, nvml or sim/);
    const b = await execa("node", [BIN, "gpu-bridge"], { cwd: ROOT, reject: false });
    expect(b.exitCode).toBe(2);
    expect(b.stderr).toMatch(/--listen is required/);
  });
});
