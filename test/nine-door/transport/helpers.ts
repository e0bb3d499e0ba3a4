import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Duplex } from "node:stream";

/** Things a test opened, closed in afterEach whatever happened. */
export class Cleanup {
  #tasks: Array<() => unknown> = [];

  add(task: () => unknown): void {
    this.#tasks.push(task);
  }

  stream<S extends Duplex>(stream: S): S {
    this.add(() => stream.destroy());
    return stream;
  }

  async tempDir(): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), "cohesix-transport-"));
    this.add(() => rm(dir, { recursive: true, force: true }));
    return dir;
  }

  async run(): Promise<void> {
    const tasks = this.#tasks.reverse();
    this.#tasks = [];
    for (const task of tasks) await task();
  }
}

/** Echoes every byte back, then ends when the peer ends. */
export function echo(conn: Duplex): void {
  conn.pipe(conn);
}

/** Everything the stream yields until its end, as text. */
export async function readAll(conn: Duplex): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of conn) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

/** The rejection of a promise that must reject. */
export async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error("expected the promise to reject");
}
