/**
 * The appliance ends a session when its ticket expires, so the command
 * line's long sessions attach with a long ticket: `tail -f` (and `sh`)
 * mint a 24 h one, one-shot commands a 5 min one. Shown against an
 * appliance whose clock runs 10 minutes ahead: the one-shot ticket is
 * already past its expiry there, the follower's is not.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { cat, tail } from "../../cli/remote.ts";
import { serveAppliance, writeKeyPair, type RunningAppliance } from "../../root-task/index.ts";
import { waitFor } from "./appliance-helpers.ts";

let dir: string;
let keyPath: string;
let app: RunningAppliance;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "cohesix-session-ticket-"));
  const keys = await writeKeyPair(join(dir, "keys"), { name: "queen" });
  keyPath = keys.privatePath;
  const clock = { now: () => Date.now() + 10 * 60_000, sync: async () => undefined };
  app = await serveAppliance({ board: "host", listen: "127.0.0.1:0", stateDir: join(dir, "state"), queenPub: keys.publicPath, clock });
});

afterAll(async () => {
  await app?.stop("test done");
  await rm(dir, { recursive: true, force: true });
});

describe("queen tickets of the command line", () => {
  test("a one-shot command's 5 min ticket is refused 10 minutes later; tail -f's 24 h ticket keeps following", { timeout: 60_000 }, async () => {
    const env = { HOME: dir, XDG_CONFIG_HOME: join(dir, "cfg") };
    const oneShot = cat({ values: { addr: app.dialString, key: keyPath }, positionals: ["/proc/boot"] }, { env, out: () => undefined, err: () => undefined });
    await expect(oneShot).rejects.toThrow(/ticket expired/);

    let text = "";
    const stop = new AbortController();
    const following = tail(
      { values: { addr: app.dialString, key: keyPath, follow: true, lines: "5", interval: "50" }, positionals: ["/log/queen.log"] },
      { env, out: (chunk) => void (text += Buffer.from(chunk).toString("utf8")), err: () => undefined, signal: stop.signal },
    );
    await waitFor("the follower's first lines", () => text.includes("attach queen queen"));
    app.app.audit("marker while following");
    await waitFor("the followed line", () => text.includes("marker while following"));
    stop.abort();
    await following;
  });
});
