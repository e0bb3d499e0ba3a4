/**
 * `cohesix update` against the real `/update/` service of a host board
 * (`cohesix serve --boot-dir DIR --release-pub FILE`): a bundle streamed,
 * committed into the inactive slot and shown by `--status`; refusals
 * (another key, another board, an older version, a changed byte) leave the
 * boot folder byte-identical; a connection cut mid-transfer by a proxy is
 * dialled again and resumes from the offset the appliance verified; a
 * progress bar on a terminal; `--rollback` cancels a try.
 */
import { readFile, writeFile } from "node:fs/promises";
import { createServer, connect, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { main } from "../../cli/main.ts";
import { readBootStateFiles } from "../../update/index.ts";
import { digestTree, makeBootDir, makeBundle, releaseKeys, type ReleaseKeys } from "../update/ab-fixture.ts";
import { cohesix, makeScratch, serve, type Scratch, type Served } from "./helpers.ts";

let scratch: Scratch;
let keys: ReleaseKeys;
let other: ReleaseKeys;
const running: Served[] = [];
let n = 0;

beforeAll(async () => {
  scratch = await makeScratch();
  keys = await releaseKeys(join(scratch.dir, "release"));
  other = await releaseKeys(join(scratch.dir, "other"), "other");
});
afterEach(async () => {
  for (const s of running.splice(0)) await s.stop();
});
afterAll(async () => {
  await scratch?.remove();
});

/** A host board serving a fresh A/B boot folder (slot a running 1.0.0). */
async function appliance(extra: readonly string[] = []): Promise<{ served: Served; bootDir: string; base: string; remote: string[] }> {
  const base = join(scratch.dir, `case-${++n}`);
  const bootDir = await makeBootDir(join(base, "boot"), { key: keys.privateKey });
  const served = await serve(scratch, ["--boot-dir", bootDir, "--release-pub", keys.publicPath, ...extra], { state: join(base, "state") });
  running.push(served);
  return { served, bootDir, base, remote: ["--addr", served.addr, "--key", scratch.queenKey] };
}

const update = (args: readonly string[]) => cohesix(["update", ...args], { env: scratch.env, timeoutMs: 60_000 });

describe("cohesix update FILE", () => {
  it("streams a bundle, commits it into the inactive slot, and --status shows both slots", async () => {
    const { bootDir, base, remote } = await appliance();
    const bundle = await makeBundle(join(base, "u.bundle"), { key: keys.privateKey, version: "1.1.0" });
    const r = await update([bundle.path, ...remote, "--no-reboot"]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toBe("slot b: version 1.1.0 written, trying with 3 tries\nnot rebooted: slot b is tried at the appliance's next boot");
    expect(await readFile(join(bootDir, "b", "Image"))).toEqual(bundle.kernel);
    expect((await readBootStateFiles(bootDir)).state).toMatchObject({ active: "a", try: "b", tries: 3, slots: { a: "good", b: "trying" } });
    const status = await update(["--status", ...remote]);
    expect(status.exitCode, status.stderr).toBe(0);
    expect(status.stdout).toBe("slot a: good, version 1.0.0 (running)\nslot b: trying, version 1.1.0\ntransfer: idle");
    const json = await update(["--status", "--json", ...remote]);
    expect(JSON.parse(json.stdout)).toMatchObject({ slot: "a", state: "good", version: "1.0.0", b_state: "trying", b_version: "1.1.0", transfer: "idle", received: 0 });
  });

  it("passes --tries, and --json reports the slot, the bytes sent and where each begin started", async () => {
    const { remote, base } = await appliance();
    const bundle = await makeBundle(join(base, "u.bundle"), { key: keys.privateKey, version: "1.1.0" });
    const r = await update([bundle.path, ...remote, "--no-reboot", "--tries", "2", "--json"]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ ok: true, slot: "b", version: "1.1.0", tries: 2, size: bundle.bytes.length, sha256: bundle.sha256, sent: bundle.bytes.length, begins: [0], rebooting: false });
  });

  it("reports that the host board does not reboot, after the slot is written (exit 1)", async () => {
    const { remote, base, bootDir } = await appliance();
    const bundle = await makeBundle(join(base, "u.bundle"), { key: keys.privateKey, version: "1.1.0" });
    const r = await update([bundle.path, ...remote]);
    expect(r.exitCode).toBe(1);
    expect(r.stdout).toBe("slot b: version 1.1.0 written, trying with 3 tries");
    expect(r.stderr).toBe("invalid: reboot: the host board does not reboot (slot b is written and is tried at the appliance's next boot; --no-reboot skips this step)");
    expect((await readBootStateFiles(bootDir)).state?.slots.b).toBe("trying");
  });

  it("is refused before any state changes: another key, another board, an older version, a changed byte", async () => {
    const { bootDir, base, remote } = await appliance();
    const before = await digestTree(bootDir);
    const cases: Array<[string, Promise<{ path: string }>, RegExp]> = [
      ["other-key", makeBundle(join(base, "k.bundle"), { key: other.privateKey }), /^permission: bundle signed by key [0-9a-f]{16}, this appliance trusts [0-9a-f]{16}$/],
      ["other-board", makeBundle(join(base, "b.bundle"), { key: keys.privateKey, board: "aarch64-virt" }), /^invalid: bundle built for board aarch64-virt, this appliance is host$/],
      ["older", makeBundle(join(base, "o.bundle"), { key: keys.privateKey, version: "0.9.0" }), /^invalid: bundle version 0\.9\.0 is older than running 1\.0\.0; pass --allow-downgrade$/],
    ];
    for (const [name, made, why] of cases) {
      const r = await update([(await made).path, ...remote, "--no-reboot"]);
      expect(r.exitCode, name).toBe(1);
      expect(r.stderr, name).toMatch(why);
      expect(await digestTree(bootDir), name).toBe(before);
    }
    const flipped = await makeBundle(join(base, "f.bundle"), { key: keys.privateKey });
    const bytes = Buffer.from(flipped.bytes);
    bytes[bytes.length - 40_000] ^= 0x04;
    await writeFile(flipped.path, bytes);
    const r = await update([flipped.path, ...remote, "--no-reboot"]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/^invalid: chunk \d+ \(bytes \d+–\d+\) does not match the bundle's signed hash: .*f\.bundle is damaged \(check it with cohesix image verify .*f\.bundle, or build it again\)$/);
    expect(await digestTree(bootDir)).toBe(before);
    expect((await readBootStateFiles(bootDir)).state).toMatchObject({ active: "a", try: null, slots: { a: "good", b: "good" } });
    // An older version goes in when asked to.
    const older = await update([(await cases[2]![1]).path, ...remote, "--no-reboot", "--allow-downgrade"]);
    expect(older.exitCode, older.stderr).toBe(0);
    expect(older.stdout).toMatch(/^slot b: version 0\.9\.0 written/);
  });

  it("resumes a transfer cut mid-stream from the offset the appliance verified, sending less than twice the bundle", async () => {
    const { served, base } = await appliance();
    const bundle = await makeBundle(join(base, "u.bundle"), { key: keys.privateKey, kernelBytes: 300_000, initrdBytes: 200_000, chunkSize: 16_384 });
    const proxy = await cuttingProxy(served.port, 250_000);
    try {
      const r = await update([bundle.path, "--addr", `tcp!127.0.0.1!${proxy.port}`, "--key", scratch.queenKey, "--no-reboot", "--json"]);
      expect(r.exitCode, r.stderr).toBe(0);
      const out = JSON.parse(r.stdout) as { begins: number[]; sent: number; slot: string };
      expect(proxy.cuts).toBe(1);
      expect(r.stderr).toMatch(/^update: connection lost at \d+ bytes \(closed: .*\); dialling again in 250 ms$/m);
      // Two begins; a third only if the appliance still held the dropped session's data when the client dialled again.
      expect(out.begins.length).toBeGreaterThanOrEqual(2);
      expect(out.begins[0]).toBe(0);
      for (const offset of out.begins.slice(1)) expect(offset).toBeGreaterThan(0);
      expect(out.sent).toBeLessThan(2 * bundle.bytes.length);
      expect(out.sent).toBeGreaterThanOrEqual(bundle.bytes.length);
      expect(out.slot).toBe("b");
    } finally {
      await proxy.close();
    }
  });

  it("draws a progress bar on a terminal, and ends it with a summary line", async () => {
    const { remote, base } = await appliance();
    const bundle = await makeBundle(join(base, "u.bundle"), { key: keys.privateKey, kernelBytes: 300_000, initrdBytes: 200_000 });
    let err = "";
    let out = "";
    const code = await main(["update", bundle.path, ...remote, "--no-reboot"], { out: (t) => void (out += String(t)), err: (t) => void (err += t), env: scratch.env, tty: true, columns: 100 });
    expect(code, err).toBe(0);
    expect(err).toMatch(/\rsending 1\.1\.0 \[#+-*\] +\d+%/);
    expect(err).toMatch(/\rsending 1\.1\.0: \d+(\.\d+)? KiB in \d+\.\d s \(.*\/s\) *\n$/);
    expect(out).toMatch(/^slot b: version 1\.1\.0 written/);
  });

  it("is refused while a slot is trying; --rollback cancels the try and the next update goes in", async () => {
    const { remote, base, bootDir } = await appliance();
    const first = await makeBundle(join(base, "1.bundle"), { key: keys.privateKey, version: "1.1.0" });
    expect((await update([first.path, ...remote, "--no-reboot"])).exitCode).toBe(0);
    const second = await makeBundle(join(base, "2.bundle"), { key: keys.privateKey, version: "1.2.0" });
    const busy = await update([second.path, ...remote, "--no-reboot"]);
    expect(busy.exitCode).toBe(1);
    expect(busy.stderr).toBe("busy: slot b is trying (3 tries left); wait until it is confirmed or rolled back, or run cohesix update --rollback");
    const back = await update(["--rollback", ...remote]);
    expect(back.exitCode, back.stderr).toBe(0);
    expect(back.stdout).toBe("next boot: slot a (the running slot; the pending try is cancelled)");
    expect((await readBootStateFiles(bootDir)).state).toMatchObject({ active: "a", try: null, slots: { b: "rolled_back" } });
    const status = await update(["--status", ...remote]);
    expect(status.stdout).toMatch(/^slot b: rolled_back, version 1\.1\.0$/m);
    expect(status.stdout).toMatch(/^rolled back: slot b \(rolled_back_by_queen\)$/m);
    const again = await update([second.path, ...remote, "--no-reboot"]);
    expect(again.exitCode, again.stderr).toBe(0);
  });

  it("--rollback with no try pending makes the other good slot boot next, and reboots into it unless --no-reboot", async () => {
    const { remote, bootDir } = await appliance();
    const r = await update(["--rollback", ...remote, "--no-reboot", "--json"]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ ok: true, next: "b", running: "a", rebooting: false });
    expect((await readBootStateFiles(bootDir)).state).toMatchObject({ active: "b", try: null, slots: { a: "good", b: "good" } });
    const second = await appliance();
    const again = await update(["--rollback", ...second.remote]);
    expect(again.exitCode).toBe(1);
    expect(again.stdout).toBe("next boot: slot b");
    expect(again.stderr).toBe("invalid: reboot: the host board does not reboot (slot b boots next; --no-reboot skips this step)");
  });

  it("signs its commands under --policy signed-ctl", async () => {
    const { remote, base } = await appliance(["--policy", "signed-ctl"]);
    const bundle = await makeBundle(join(base, "u.bundle"), { key: keys.privateKey });
    const r = await update([bundle.path, ...remote, "--no-reboot"]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^slot b: version 1\.1\.0 written/);
  });

  it("says why when the appliance publishes no /update/", async () => {
    const base = join(scratch.dir, `case-${++n}`);
    const served = await serve(scratch, [], { state: join(base, "state") });
    running.push(served);
    const r = await update(["--status", "--addr", served.addr, "--key", scratch.queenKey]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toBe("not found: update: this appliance publishes no /update/ (it runs from an image without A/B slots, made without cohesix image --ab, or is a host board served without --boot-dir DIR --release-pub FILE)");
  });

  it("refuses wrong usage with exit 2: no mode, two modes, --tries out of range", async () => {
    for (const args of [[], ["x.bundle", "--status"], ["x.bundle", "--tries", "12"], ["--status", "--rollback"]]) {
      const r = await update(args);
      expect(r.exitCode, args.join(" ")).toBe(2);
    }
    const garbage = join(scratch.dir, "garbage.bundle");
    await writeFile(garbage, "this is not a bundle at all, just text\n");
    const notBundle = await update([garbage, "--addr", "tcp!127.0.0.1!1"]);
    expect(notBundle.exitCode).toBe(1);
    expect(notBundle.stderr).toMatch(/^invalid: .*garbage\.bundle: not a cohesix bundle: the file does not start with COHESIX-BUNDLE1 \(build one with cohesix bundle\)$/);
    const missing = await update([join(scratch.dir, "nowhere.bundle"), "--addr", "tcp!127.0.0.1!1"]);
    expect(missing.exitCode).toBe(1);
    expect(missing.stderr).toMatch(/^not found: bundle .*nowhere\.bundle: no such file \(build one with cohesix bundle\)$/);
  });
});

/** A TCP proxy to 127.0.0.1:`port` that cuts its first connection once `after` bytes went upstream; later connections pass. */
async function cuttingProxy(port: number, after: number): Promise<{ port: number; cuts: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const state = { cuts: 0, connections: 0 };
  const server: Server = createServer((client) => {
    const cut = state.connections++ === 0;
    const upstream = connect(port, "127.0.0.1");
    sockets.add(client).add(upstream);
    let sent = 0;
    client.on("data", (data: Buffer) => {
      if (cut && sent + data.length > after) {
        upstream.write(data.subarray(0, Math.max(0, after - sent)));
        state.cuts++;
        client.destroy();
        upstream.destroy();
        return;
      }
      sent += data.length;
      upstream.write(data);
    });
    upstream.on("data", (data: Buffer) => client.write(data));
    for (const [a, b] of [[client, upstream], [upstream, client]] as const) {
      a.on("close", () => b.destroy());
      a.on("error", () => b.destroy());
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as { port: number }).port,
    get cuts() {
      return state.cuts;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
