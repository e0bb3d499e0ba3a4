/**
 * `npm run bench -- update`: what `/update/` costs on the host board. An
 * in-process appliance serves an A/B boot folder (`--boot-dir`) on
 * 127.0.0.1; a queen streams a signed bundle of `--mib` MiB (kernel and
 * initramfs of random bytes, `--chunk-kib` KiB chunks) into `/update/data`
 * over 9P2000.L, one write of the iounit at a time, then commits it.
 * Printed: the transfer's MB/s next to the floor (the same bytes written to
 * a local file with a sha256 and an fdatasync per chunk, no 9P) and the
 * same writes handed straight to the service (no 9P), the commit's time (everything checked again, both slots' worth of bytes
 * written and synced, the state written twice), and the start-up cost of
 * rebuilding a lost progress record (every staged chunk hashed again)
 * against a start with the record.
 *
 * @example
 * ```sh
 * npm run bench -- update --mib 64
 * ```
 * @module
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdir, mkdtemp, open, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { NineClient } from "../nine-door/index.ts";
import { mintTicket, serveAppliance, writeKeyPair } from "../root-task/index.ts";
import { initialBootState, UpdateService, writeBootStateFiles, writeBundle } from "../update/index.ts";
import { load } from "./child.ts";

const USAGE = `usage: npm run bench -- update [OPTIONS]

  --mib N         bundle size in MiB (default 64)
  --chunk-kib N   chunk size in KiB (default 1024, the bundle default)
`;

/** Runs the benchmark; resolves with the exit code. */
export async function run(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({ args: [...argv], options: { mib: { type: "string" }, "chunk-kib": { type: "string" }, help: { type: "boolean" } } });
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const mib = Number(values.mib ?? "64");
  const chunkKib = Number(values["chunk-kib"] ?? "1024");
  if (!Number.isSafeInteger(mib) || mib < 1 || mib > 400 || !Number.isSafeInteger(chunkKib) || chunkKib < 4 || chunkKib > 16384) {
    process.stderr.write(USAGE);
    return 2;
  }
  const dir = await mkdtemp(join(tmpdir(), "cohesix-bench-update-"));
  try {
    const queen = await writeKeyPair(join(dir, "keys"), { name: "queen" });
    const release = await writeKeyPair(join(dir, "keys"), { name: "release" });
    const bootDir = join(dir, "boot");
    for (const slot of ["a", "b"]) {
      await mkdir(join(bootDir, slot), { recursive: true });
      for (const name of ["Image", "initrd.gz"]) await writeFile(join(bootDir, slot, name), randomBytes(4096));
      await writeFile(join(bootDir, slot, "manifest.json"), `{"version":"1.0.0"}\n`);
    }
    await writeBootStateFiles(bootDir, initialBootState({ active: "a", other: "good" }));
    const half = (mib << 20) / 2;
    await writeFile(join(dir, "Image"), randomBytes(half));
    await writeFile(join(dir, "initrd.gz"), randomBytes(half));
    const bundlePath = join(dir, "u.bundle");
    await writeBundle({ board: "host", version: "1.1.0", kernel: join(dir, "Image"), initramfs: join(dir, "initrd.gz"), key: release.privateKey, out: bundlePath, chunkSize: chunkKib << 10 });
    const bytes = await readFile(bundlePath);
    const sha256 = createHash("sha256").update(bytes).digest("hex");
    const mb = bytes.length / 1e6;

    // The floor: the same bytes to a local file, a sha256 and an fdatasync per chunk.
    const floorStarted = performance.now();
    const floor = await open(join(dir, "floor.bin"), "w");
    const chunk = chunkKib << 10;
    for (let at = 0; at < bytes.length; at += chunk) {
      const piece = bytes.subarray(at, at + chunk);
      await floor.write(piece, 0, piece.length, at);
      createHash("sha256").update(piece).digest();
      await floor.datasync();
    }
    await floor.close();
    const floorS = (performance.now() - floorStarted) / 1000;

    const stateDir = join(dir, "state");
    const app = await serveAppliance({ board: "host", listen: "127.0.0.1:0", stateDir, queenPub: queen.publicPath, bootDir, releasePub: release.publicPath });
    let transferS = 0;
    let commitS = 0;
    let iounit = 0;
    try {
      const client = await NineClient.dial(app.dialString, { dialect: "9P2000.L" });
      try {
        const root = await client.attach({ uname: "queen", aname: mintTicket({ role: "queen", sub: "queen" }, queen.privateKey, { ttlS: 3600 }) });
        const ctl = await root.walk("update/ctl");
        await ctl.open("rw");
        const ask = async (command: string): Promise<string> => {
          await ctl.write(command);
          return (await ctl.readAll(0)).toString("utf8").trim();
        };
        const begun = await ask(JSON.stringify({ begin: { size: bytes.length, sha256 } }));
        if (begun !== "ok offset=0") throw new Error(`begin answered ${begun}`);
        const data = await root.walk("update/data");
        await data.open("w");
        iounit = client.iounit;
        const started = performance.now();
        for (let at = 0; at < bytes.length; ) at += await data.write(bytes.subarray(at, at + iounit), at);
        transferS = (performance.now() - started) / 1000;
        await data.clunk();
        const t = performance.now();
        const committed = await ask('{"commit":{}}');
        commitS = (performance.now() - t) / 1000;
        if (!committed.startsWith("ok slot=b")) throw new Error(`commit answered ${committed}`);
      } finally {
        client.close();
      }
    } finally {
      await app.stop("bench done");
    }

    // Start-up with a whole staged bundle: with its progress record, and with the record lost.
    const stage = join(dir, "restart");
    await writeBootStateFiles(bootDir, { ...initialBootState({ active: "a", other: "good" }), seq: 100 });
    const options = { bootDir, stateDir: stage, runningSlot: "a" as const, board: "host", releasePub: release.publicKey, runningVersion: "1.0.0" };
    const service = await UpdateService.open(options);
    await service.command(JSON.stringify({ begin: { size: bytes.length, sha256 } }), { role: "queen", subject: "queen" });
    const directStarted = performance.now();
    for (let at = 0; at < bytes.length; at += 1 << 20) await service.write(at, bytes.subarray(at, at + (1 << 20)), { role: "queen", subject: "queen" });
    const directS = (performance.now() - directStarted) / 1000;
    await service.close();
    let t = performance.now();
    await (await UpdateService.open(options)).close();
    const withRecordMs = performance.now() - t;
    await rm(join(stage, "update", "progress.json"));
    t = performance.now();
    await (await UpdateService.open(options)).close();
    const rehashMs = performance.now() - t;

    process.stdout.write(`bundle ${mb.toFixed(1)} MB, chunks of ${chunkKib} KiB, 9P2000.L writes of ${iounit} bytes, one outstanding\n`);
    process.stdout.write(`transfer into /update/data: ${transferS.toFixed(2)} s, ${(mb / transferS).toFixed(1)} MB/s\n`);
    process.stdout.write(`floor (local file, sha256 + fdatasync per chunk): ${floorS.toFixed(2)} s, ${(mb / floorS).toFixed(1)} MB/s; transfer / floor time: ${(transferS / floorS).toFixed(2)}x\n`);
    process.stdout.write(`the same writes straight to the service (no 9P): ${directS.toFixed(2)} s, ${(mb / directS).toFixed(1)} MB/s\n`);
    process.stdout.write(`commit (re-check everything, write slot b, state twice): ${commitS.toFixed(2)} s\n`);
    process.stdout.write(`start with a staged bundle: ${withRecordMs.toFixed(1)} ms with its progress record, ${rehashMs.toFixed(1)} ms rebuilding it (every chunk hashed again)   load ${load()}\n`);
    return 0;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
