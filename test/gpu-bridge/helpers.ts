/**
 * Helpers for the GPU bridge suites: a bridge on 127.0.0.1 with a fresh key,
 * a 9P client holding a bridge ticket, ctl round trips, and tail readers.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureBridgeKey, makeJobDescriptor, mintBridgeTicket, startBridge, type BridgeOptions, type JobDescriptor, type RunningBridge } from "../../gpu-bridge/index.ts";
import { NineClient, type Fid } from "../../nine-door/index.ts";

export const FIXTURES = new URL("./fixtures/", import.meta.url).pathname;

export interface TestBridge {
  readonly bridge: RunningBridge;
  readonly dir: string;
  readonly keyPath: string;
  readonly privateKey: Uint8Array;
  /** A 9P2000 client attached with a valid bridge ticket (9P2000 keeps error texts). */
  connect(): Promise<{ client: NineClient; top: Fid }>;
  close(): Promise<void>;
}

export async function startTestBridge(options: Partial<BridgeOptions> = {}): Promise<TestBridge> {
  const dir = await mkdtemp(join(tmpdir(), "cohesix-gpu-"));
  const keyPath = join(dir, "keys", "bridge.key");
  const bridge = await startBridge({ listen: "127.0.0.1:0", backend: "sim", key: keyPath, ...options });
  const { privateKey } = await ensureBridgeKey(keyPath, { create: false });
  const clients: NineClient[] = [];
  return {
    bridge,
    dir,
    keyPath,
    privateKey,
    async connect() {
      const client = await NineClient.dial(bridge.dialString, { dialect: "9P2000" });
      clients.push(client);
      const top = await client.attach({ uname: "bridge", aname: mintBridgeTicket(privateKey) });
      return { client, top };
    },
    async close() {
      for (const c of clients) c.close();
      await bridge.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Writes one command to a ctl-style file and reads the reply on the same fid. */
export async function command(top: Fid, path: string, text: string): Promise<string> {
  const f = await top.walk(path);
  try {
    await f.open("rw");
    await f.write(text);
    return (await f.readAll()).toString("utf8");
  } finally {
    await f.clunk();
  }
}

/** Reads JSON lines from an append-only file until `done` holds for the lines so far. */
export async function readUntil(top: Fid, path: string, done: (lines: Record<string, unknown>[]) => boolean, timeoutMs = 10_000): Promise<Record<string, unknown>[]> {
  const f = await top.walk(path);
  await f.open("r");
  const signal = AbortSignal.timeout(timeoutMs);
  let offset = 0;
  let text = "";
  try {
    for (;;) {
      const lines = text.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as Record<string, unknown>);
      if (done(lines)) return lines;
      const data = await f.read(offset, 65536, signal);
      offset += data.length;
      text += Buffer.from(data).toString("utf8");
    }
  } finally {
    await f.clunk().catch(() => {});
  }
}

/** A descriptor for `payload` with defaults for the rest. */
export function descriptor(fields: Partial<Omit<JobDescriptor, "bytes_hash" | "payload_b64">> & { job: string; worker: string }, payload: Uint8Array = new Uint8Array([1, 2, 3, 4])): JobDescriptor {
  return makeJobDescriptor({ kernel: "saxpy", grid: [64, 1, 1], block: [256, 1, 1], timeout_ms: 5000, ...fields }, payload);
}
