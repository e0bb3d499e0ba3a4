/**
 * `npm run bench -- NAME [OPTIONS]`: runs one benchmark by name. Each
 * benchmark is a module exporting `run(argv)`, which prints its figures and
 * resolves with an exit code. Add a benchmark by adding a row to `benches`.
 *
 * @example
 * ```sh
 * npm run bench -- 9p --duration 3 --outstanding 32
 * ```
 * @module
 */

/** A benchmark: a one-line summary and the function that runs it. */
interface Bench {
  readonly summary: string;
  run(argv: readonly string[]): Promise<number>;
}

const benches: Record<string, Bench> = {
  "9p": {
    summary: "9P2000.L metadata ops/s, bulk read MB/s and ctl round trip; NineDoor vs diod",
    run: async (argv) => (await import("./9p.ts")).run(argv),
  },
  gpu: {
    summary: "GPU bridge (simulated GPUs): job submit → OK latency p50/p99, jobs/s, overhead vs the backend",
    run: async (argv) => (await import("./gpu.ts")).run(argv),
  },
  scale: {
    summary: "1,000 worker sessions appending telemetry 1 line/s: append p50/p99, root task RSS",
    run: async (argv) => (await import("./scale.ts")).run(argv),
  },
  ctl: {
    summary: "/queen/ctl round trip with durable commits: p50/p99, commands/s, 1 and N queens",
    run: async (argv) => (await import("./ctl.ts")).run(argv),
  },
  boot: {
    summary: "aarch64-virt guest: boot → READY vs the floor image, restore → serving, initramfs sizes, warm build",
    run: async (argv) => (await import("./boot.ts")).run(argv),
  },
  image: {
    summary: "flashable disk image: build time (cold, warm), size, flash-to-file MB/s with verification on",
    run: async (argv) => (await import("./image.ts")).run(argv),
  },
  tls: {
    summary: "NineDoor's own TLS: session setup p50/p99 plain vs TLS on loopback, device certificate creation",
    run: async (argv) => (await import("./tls.ts")).run(argv),
  },
  cli: {
    summary: "one cohesix invocation (ls, cat, ctl against a host board) vs a bare node -e 0, side by side",
    run: async (argv) => (await import("./cli.ts")).run(argv),
  },
  fleet: {
    summary: "fleet link → mosquitto → QoS 1 subscriber: records/s live and draining a backlog, vs mosquitto_pub/sub",
    run: async (argv) => (await import("./fleet.ts")).run(argv),
  },
  update: {
    summary: "/update/ on the host board: bundle transfer MB/s over 9P vs a local fdatasync'd write, commit time, restart re-hash",
    run: async (argv) => (await import("./update.ts")).run(argv),
  },
  "update-ab": {
    summary: "A/B field update under QEMU and U-Boot: bundle vs image size, 9P transfer MB/s vs raw TCP into the guest, update → confirmed, broken v3 → back on v2",
    run: async (argv) => (await import("./update-ab.ts")).run(argv),
  },
  dashboard: {
    summary: "operator dashboard, 100 workers at 1 Hz in Chromium: telemetry append → DOM p50/p99, server CPU and RSS, page JS heap",
    run: async (argv) => (await import("./dashboard.ts")).run(argv),
  },
  "ctl-log": {
    summary: "commit log durable appends/s and latency with group commit",
    run: async (argv) => {
      await (await import("./ctl-log.ts")).run([...argv]);
      return 0;
    },
  },
};

function usage(): string {
  const rows = Object.entries(benches).map(([name, b]) => `  ${name.padEnd(8)} ${b.summary}`);
  return ["usage: npm run bench -- NAME [OPTIONS]   (NAME --help for its options)", "", "benchmarks:", ...rows, ""].join("\n");
}

const [name, ...rest] = process.argv.slice(2);
const bench = name === undefined ? undefined : benches[name];
if (!bench) {
  if (name !== undefined && name !== "--help" && name !== "-h") process.stderr.write(`bench: unknown benchmark ${JSON.stringify(name)}\n`);
  process.stderr.write(usage());
  process.exitCode = name === "--help" || name === "-h" ? 0 : 2;
} else {
  try {
    process.exitCode = await bench.run(rest);
  } catch (err) {
    process.stderr.write(`bench ${name}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  }
}
