/**
 * `npm run bench -- tls`: what NineDoor's own TLS costs. Two in-process
 * appliances on 127.0.0.1 with fresh state dirs, one plain TCP (`--tls
 * auto` on loopback) and one TLS with its device certificate (`--tls on`);
 * for each, `--sessions N` times: dial (TLS: handshake and pin check),
 * Tversion, Tattach with a queen ticket (TLS: naming the audience), read
 * `/proc/lifecycle/state`, clunk and close. Printed: p50/p99 of that
 * session setup per transport and the ratio, plus how long making the
 * device key and certificate takes (the first boot's extra cost).
 *
 * @example
 * ```sh
 * npm run bench -- tls --sessions 200
 * ```
 * @module
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { NineClient, dial } from "../nine-door/index.ts";
import { generateKeyPair, keyId, makeDeviceCert, mintTicket, serveAppliance, writeKeyPair, type RunningAppliance } from "../root-task/index.ts";
import { load, percentile } from "./child.ts";

const USAGE = `usage: npm run bench -- tls [OPTIONS]

  --sessions N   session setups measured per transport, after 10 warm-up ones (default 200)
`;

async function session(app: RunningAppliance, queenKey: Uint8Array): Promise<number> {
  const device = app.app.deviceCert;
  const started = performance.now();
  const conn = await dial(app.dialString, device ? { pin: device.fingerprint } : {});
  const client = await NineClient.connect(conn, { dialect: "9P2000" });
  try {
    const aud = device ? keyId(app.app.bootPublicKey) : undefined;
    const root = await client.attach({ uname: "queen", aname: mintTicket({ role: "queen", sub: "queen", ...(aud ? { aud } : {}) }, queenKey, { ttlS: 300 }) });
    await root.readText("proc/lifecycle/state");
    await root.clunk();
  } finally {
    client.close();
  }
  return performance.now() - started;
}

/** Runs the benchmark; resolves with the exit code. */
export async function run(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({ args: [...argv], options: { sessions: { type: "string" }, help: { type: "boolean" } } });
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const sessions = Number(values.sessions ?? "200");
  if (!Number.isSafeInteger(sessions) || sessions < 1) {
    process.stderr.write(USAGE);
    return 2;
  }
  const dir = await mkdtemp(join(tmpdir(), "cohesix-bench-tls-"));
  try {
    const boot = await generateKeyPair();
    const makes: number[] = [];
    for (let i = 0; i < 20; i++) {
      const t = performance.now();
      makeDeviceCert(boot.privateKey);
      makes.push(performance.now() - t);
    }
    const queen = await writeKeyPair(join(dir, "keys"), { name: "queen" });
    const plain = await serveAppliance({ board: "host", listen: "127.0.0.1:0", stateDir: join(dir, "plain"), queenPub: queen.publicPath });
    const tls = await serveAppliance({ board: "host", listen: "127.0.0.1:0", stateDir: join(dir, "tls"), queenPub: queen.publicPath, tlsMode: "on" });
    try {
      const figures: Record<string, number[]> = { plain: [], tls: [] };
      for (const [name, app] of [["plain", plain], ["tls", tls]] as const) {
        for (let i = 0; i < 10; i++) await session(app, queen.privateKey);
        for (let i = 0; i < sessions; i++) figures[name]!.push(await session(app, queen.privateKey));
      }
      const p = (xs: number[], q: number) => percentile([...xs].sort((a, b) => a - b), q);
      process.stdout.write(`device key + certificate made in p50 ${p(makes, 50).toFixed(2)} ms (20 runs)\n`);
      for (const name of ["plain", "tls"] as const) {
        process.stdout.write(`${name.padEnd(5)} session setup (dial, version, attach, one read, close): p50 ${p(figures[name]!, 50).toFixed(2)} ms, p99 ${p(figures[name]!, 99).toFixed(2)} ms over ${sessions}\n`);
      }
      process.stdout.write(`tls / plain p50: ${(p(figures.tls!, 50) / p(figures.plain!, 50)).toFixed(2)}x   load ${load()}\n`);
    } finally {
      await plain.stop("bench done");
      await tls.stop("bench done");
    }
    return 0;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
