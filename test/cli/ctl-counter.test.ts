/**
 * The CLI's signed ctl costs no extra round trip for its counter: it keeps
 * the last counter each appliance accepted (ctl_counters beside
 * known_hosts) and reads /queen/ctr only when it has none, or when the
 * appliance refuses a counter another queen has passed meanwhile (then it
 * signs again after the counter it read and sends once more). Two queens
 * with the same key still never take the same counter.
 */
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, test } from "vitest";
import { main } from "../../cli/main.ts";
import { ctlCountersPath } from "../../cli/ctl-counter.ts";
import { showLog, signEnvelope, type RunningAppliance } from "../../root-task/index.ts";
import { run, useAppliances } from "../root-task/fixture.ts";
import { cohesix } from "./helpers.ts";

const appliances = useAppliances({ prefix: "cohesix-ctl-counter-" });

/** 9P2000 request type numbers, and the names this suite looks for. */
const TYPES: Record<number, string> = { 100: "Tversion", 104: "Tattach", 108: "Tflush", 110: "Twalk", 112: "Topen", 116: "Tread", 118: "Twrite", 120: "Tclunk", 124: "Tstat" };

interface Request {
  readonly type: string;
  /** A walk's names, joined with `/`. */
  readonly walk?: string;
}

/** A TCP proxy in front of `app` that records every request a client sends, connection by connection. */
async function countingProxy(app: RunningAppliance): Promise<{ dial: string; requests: Request[]; close(): Promise<void> }> {
  const port = Number(app.dialString.split("!")[2]);
  const requests: Request[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = createConnection({ host: "127.0.0.1", port });
    sockets.add(client).add(upstream);
    let pending = Buffer.alloc(0);
    client.on("data", (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 7 && pending.length >= pending.readUInt32LE(0)) {
        const size = pending.readUInt32LE(0);
        const frame = pending.subarray(0, size);
        pending = pending.subarray(size);
        const type = TYPES[frame[4]!] ?? `type ${frame[4]}`;
        if (type !== "Twalk") {
          requests.push({ type });
          continue;
        }
        const names: string[] = [];
        let at = 7 + 8;
        const n = frame.readUInt16LE(at);
        at += 2;
        for (let i = 0; i < n; i++) {
          const len = frame.readUInt16LE(at);
          names.push(frame.subarray(at + 2, at + 2 + len).toString("utf8"));
          at += 2 + len;
        }
        requests.push({ type, walk: names.join("/") });
      }
      upstream.write(chunk);
    });
    upstream.on("data", (chunk: Buffer) => client.write(chunk));
    const end = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on("close", end).on("error", end);
    upstream.on("close", end).on("error", end);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("proxy: no port");
  return {
    dial: `tcp!127.0.0.1!${address.port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

const proxies: Array<{ close(): Promise<void> }> = [];
afterEach(async () => {
  for (const p of proxies.splice(0)) await p.close();
});

/** `cohesix ARGS…` in this process, with its own config folder (where ctl_counters lives). */
async function cli(args: readonly string[], config: string): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const code = await main(args, { out: (t) => (out += String(t)), err: (t) => (err += t), env: { XDG_CONFIG_HOME: config } });
  return { code, out, err };
}

const queenKey = (): string => join(appliances.dir, "keys", "queen.key");

describe("cohesix ctl and the signed-ctl counter", () => {
  test("in steady state a ctl is one walk, open, write, read and clunk: no read of /queen/ctr", { timeout: 60_000 }, async () => {
    const { app } = await appliances.start();
    const proxy = await countingProxy(app);
    proxies.push(proxy);
    const config = join(appliances.dir, "config-steady");
    const ctl = (ops: number) => cli(["ctl", `{"budget":{"ops":${ops}}}`, "--addr", proxy.dial, "--key", queenKey()], config);

    // The first command knows no counter: it reads /queen/ctr once.
    const first = await ctl(1);
    expect(first.code, first.err).toBe(0);
    expect(proxy.requests.filter((r) => r.walk === "queen/ctr")).toHaveLength(1);
    expect(await readFile(ctlCountersPath({ XDG_CONFIG_HOME: config }), "utf8")).toMatch(new RegExp(`^${proxy.dial} [0-9a-f]{16} 1\\n$`));

    proxy.requests.length = 0;
    const second = await ctl(2);
    expect(second.code, second.err).toBe(0);
    expect(second.out).toBe('{"ok":true,"defaults":{"ops":2}}\n');
    const afterAttach = proxy.requests.slice(proxy.requests.findIndex((r) => r.type === "Tattach") + 1);
    expect(afterAttach).toEqual([{ type: "Twalk", walk: "queen/ctl" }, { type: "Topen" }, { type: "Twrite" }, { type: "Tread" }, { type: "Tclunk" }]);
    expect(app.app.state.ctr).toBe(2);
  });

  test("a counter another queen passed is refused, read again from /queen/ctr once, and the command goes through", { timeout: 60_000 }, async () => {
    const { app } = await appliances.start();
    const proxy = await countingProxy(app);
    proxies.push(proxy);
    const config = join(appliances.dir, "config-stale");
    const ctl = (ops: number) => cli(["ctl", `{"budget":{"ops":${ops}}}`, "--addr", proxy.dial, "--key", queenKey()], config);
    expect((await ctl(1)).code).toBe(0);

    // Another queen with the same key moves the counter to 5.
    const { ctl: other } = await appliances.queenCtl(app);
    expect(await run(other, signEnvelope('{"budget":{"ops":50}}', appliances.queenKey, { ctr: 5 }))).toMatch(/^\{"ok":true/);

    proxy.requests.length = 0;
    const r = await ctl(2);
    expect(r.code, r.err).toBe(0);
    expect(proxy.requests.filter((q) => q.walk === "queen/ctr")).toHaveLength(1);
    expect(proxy.requests.filter((q) => q.type === "Twrite")).toHaveLength(2);
    expect(app.app.state.ctr).toBe(6);
    expect(await readFile(ctlCountersPath({ XDG_CONFIG_HOME: config }), "utf8")).toMatch(/ 6\n$/);

    // And the next one is steady again.
    proxy.requests.length = 0;
    expect((await ctl(3)).code).toBe(0);
    expect(proxy.requests.filter((q) => q.walk === "queen/ctr")).toHaveLength(0);
  });

  test("two CLI processes with the same key interleaving ctl all succeed, their counters strictly rising in the log", { timeout: 180_000 }, async () => {
    const { app, stateDir } = await appliances.start();
    // Each its own config folder, so each one's remembered counter goes stale as the other moves on.
    const lane = async (name: string, base: number): Promise<void> => {
      for (let i = 1; i <= 8; i++) {
        const r = await cohesix(["ctl", `{"budget":{"ops":${base + i}}}`, "--addr", app.dialString, "--key", queenKey()], {
          env: { XDG_CONFIG_HOME: join(appliances.dir, `config-${name}`) },
          timeoutMs: 60_000,
        });
        expect(r.exitCode, `${name} #${i}: ${r.stderr}`).toBe(0);
      }
    };
    await Promise.all([lane("a", 100), lane("b", 200)]);
    await appliances.stop(app);
    const { records } = await showLog(stateDir);
    const ctrs = records.filter((r) => r.kind === "ctr").map((r) => (r.body as { ctr: number }).ctr);
    expect(ctrs).toHaveLength(16);
    for (let i = 1; i < ctrs.length; i++) expect(ctrs[i]!).toBeGreaterThan(ctrs[i - 1]!);
    expect(records.filter((r) => r.kind === "budget")).toHaveLength(16);
  });
});
