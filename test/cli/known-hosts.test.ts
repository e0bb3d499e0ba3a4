/**
 * The CLI pins an appliance's certificate on first use (known_hosts, like
 * ssh), learns its audience from it, and refuses a changed certificate with
 * a message that says what to do. The appliances serve with `--tls on` on
 * 127.0.0.1.
 */
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NineClient, dial } from "../../nine-door/index.ts";
import { cohesix, makeScratch, serve, type Scratch, type Served } from "./helpers.ts";

let scratch: Scratch;
let a: Served;
let b: Served;
let knownHosts: string;

beforeAll(async () => {
  scratch = await makeScratch();
  knownHosts = join(scratch.env.XDG_CONFIG_HOME, "cohesix", "known_hosts");
  a = await serve(scratch, ["--tls", "on"], { state: join(scratch.dir, "state-a") });
  b = await serve(scratch, ["--tls", "on"], { state: join(scratch.dir, "state-b") });
});

afterAll(async () => {
  await a?.stop();
  await b?.stop();
  await scratch?.remove();
});

async function bootOf(served: Served): Promise<string> {
  const r = await cohesix(["cat", "/proc/boot", "--addr", served.addr, "--key", scratch.queenKey], { env: scratch.env });
  expect(r.exitCode, r.stderr).toBe(0);
  return r.stdout;
}

describe("cohesix and known_hosts", () => {
  it("serve --tls on prints a tls! address on 127.0.0.1", () => {
    expect(a.addr).toMatch(/^tls!127\.0\.0\.1!\d+$/);
    expect(b.addr).toMatch(/^tls!127\.0\.0\.1!\d+$/);
  });

  it("pins the certificate on first use, with the appliance's boot key id as its audience, and says so once", async () => {
    const first = await cohesix(["cat", "/proc/boot", "--addr", a.addr, "--key", scratch.queenKey], { env: scratch.env });
    expect(first.exitCode, first.stderr).toBe(0);
    const fingerprint = /^tls_fingerprint=(sha256:[0-9a-f]{64})$/m.exec(first.stdout)?.[1];
    const bootKey = /^boot_key=([0-9a-f]{16})$/m.exec(first.stdout)?.[1];
    expect(fingerprint).toBeDefined();
    expect(first.stderr).toBe(`pinned ${a.addr} ${fingerprint} (appliance ${bootKey}) in ${knownHosts}`);
    expect(await readFile(knownHosts, "utf8")).toBe(`${a.addr} ${fingerprint} aud=${bootKey}\n`);

    const again = await cohesix(["cat", "/proc/lifecycle/state", "--addr", a.addr, "--key", scratch.queenKey], { env: scratch.env });
    expect(again.stderr).toBe("");
    expect(again.stdout.trim()).toBe("ONLINE");
    expect((await readFile(knownHosts, "utf8")).split("\n").filter(Boolean)).toHaveLength(1);
  });

  it("refuses a changed certificate with one line saying what to do, and exit 1", async () => {
    const bootB = await bootOf(b);
    const fingerprintB = /^tls_fingerprint=(sha256:[0-9a-f]{64})$/m.exec(bootB)![1]!;
    const fingerprintA = /^tls_fingerprint=(sha256:[0-9a-f]{64})$/m.exec(await bootOf(a))![1]!;
    // B's address now pinned to A's certificate: as if B had been reflashed.
    const text = await readFile(knownHosts, "utf8");
    await writeFile(knownHosts, text.replace(`${b.addr} ${fingerprintB}`, `${b.addr} ${fingerprintA}`));
    const r = await cohesix(["ls", "/", "--addr", b.addr, "--key", scratch.queenKey], { env: scratch.env });
    expect(r.exitCode).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toBe(
      `permission: the appliance at ${b.addr} presents a different certificate (${fingerprintB}, pinned ${fingerprintA}); if it was reflashed, remove its line from ${knownHosts}`,
    );
    // Doing what it says: the next connection pins B afresh.
    await writeFile(knownHosts, text.split("\n").filter((line) => !line.startsWith(`${b.addr} `)).join("\n"));
    const after = await cohesix(["ls", "/", "--addr", b.addr, "--key", scratch.queenKey], { env: scratch.env });
    expect(after.exitCode, after.stderr).toBe(0);
    expect(after.stderr).toMatch(new RegExp(`^pinned ${b.addr} ${fingerprintB} `));
  });

  it("a ticket minted for one appliance (ticket --aud) is refused by another", async () => {
    const bootKeyA = /^boot_key=([0-9a-f]{16})$/m.exec(await bootOf(a))![1]!;
    const t = await cohesix(["ticket", "--role", "queen", "--key", scratch.queenKey, "--aud", bootKeyA], { env: scratch.env });
    expect(t.exitCode, t.stderr).toBe(0);
    const attach = async (served: Served, pin: string) => {
      const client = await NineClient.connect(await dial(served.addr, { pin }), { dialect: "9P2000" });
      try {
        await client.attach({ uname: "queen", aname: t.stdout.trim() });
        return "attached";
      } finally {
        client.close();
      }
    };
    const pinOf = async (served: Served) => /^tls_fingerprint=(sha256:[0-9a-f]{64})$/m.exec(await bootOf(served))![1]!;
    expect(await attach(a, await pinOf(a))).toBe("attached");
    await expect(attach(b, await pinOf(b))).rejects.toThrow(/^permission: ticket is for appliance [0-9a-f]{16}, this is [0-9a-f]{16}/);
  });

  it("a tcp! address of a TLS appliance fails with a line that says to dial tls!", async () => {
    const plain = a.addr.replace(/^tls!/, "tcp!");
    const r = await cohesix(["ls", "/", "--addr", plain, "--key", scratch.queenKey, "--timeout", "5"], { env: scratch.env });
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/^closed: .*version negotiation/);
    expect(r.stderr.endsWith(`(if the appliance serves TLS, as it does off loopback by default, dial ${a.addr})`)).toBe(true);
  });
});
