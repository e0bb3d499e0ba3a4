import { afterEach, describe, expect, it } from "vitest";
import { BaseNode, Directory, DirMode, NineClient, NineServer, StaticFile, memoryPair, type Node } from "../../../nine-door/index.ts";

/** A directory whose walks answer only after `delayMs`, ignoring cancellation. */
class SlowDir extends BaseNode {
  readonly #child = new StaticFile("x", "x\n");
  constructor(readonly delayMs: number) {
    super("slow", { mode: DirMode.DIR | 0o555 });
  }
  override async walk(name: string): Promise<Node> {
    await new Promise((r) => setTimeout(r, this.delayMs));
    if (name !== "x") throw new Error("no");
    return this.#child;
  }
  override list(): Node[] {
    return [this.#child];
  }
}

let server: NineServer | undefined;
afterEach(() => server?.close());

describe("Fid.walk()", () => {
  it("clunks a newfid the server bound after the walk was aborted", async () => {
    server = new NineServer({
      root: new Directory("/", { children: [new SlowDir(50)] }),
      attach: () => ({ caller: { role: "queen", subject: "queen" } }),
    });
    const [a, b] = memoryPair();
    const session = server.accept(b, "memory");
    const client = await NineClient.connect(a);
    const root = await client.attach({ aname: "" });
    const abort = new AbortController();
    const walking = root.walk("slow/x", abort.signal);
    setTimeout(() => abort.abort(), 10);
    await expect(walking).rejects.toThrow();
    // The server finished the walk (it ignores the flush) and bound the fid;
    // the client must clunk it, leaving only the attach fid.
    await expect.poll(() => session.fids.size, { timeout: 2000 }).toBe(1);
    // The fid number is free for reuse without "fid in use".
    const again = await root.walk("slow/x");
    expect(again.qid.type & 0x80).toBe(0);
    client.close();
  });
});
