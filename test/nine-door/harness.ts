/**
 * Test harness: a NineDoor server over a small tree on 127.0.0.1, and a raw
 * connection that sends hand-made messages with chosen tags and records
 * replies in arrival order (for ordering rules such as flush(5)).
 */
import net from "node:net";
import {
  AppendLog,
  CtlFile,
  decodeMessage,
  Directory,
  encodeMessage,
  FrameSplitter,
  GeneratedFile,
  listen,
  NineServer,
  PermissionError,
  StaticFile,
  type Attachment,
  type Dialect,
  type Listener,
  type Message,
  type RMessage,
  type ServerEvent,
  type ServerLimits,
  type TMessage,
} from "../../nine-door/index.ts";

/** A tree with one of each provider kind. */
export function sampleTree() {
  const log = new AppendLog("log", { writable: true, retainBytes: 1 << 16 });
  const tail = new AppendLog("tail", { writable: true, blockingReads: true });
  const big = new StaticFile("big", Buffer.alloc(3 << 20, 7));
  const ctl = new CtlFile("ctl", (cmd) => (cmd === "fail" ? Promise.reject(new Error("boom")) : `ok ${cmd}`));
  const notes = new StaticFile("notes", "hello\n", { writable: true });
  const deep = new Directory("a", { children: [new Directory("b", { children: [new StaticFile("c", "deep\n")] })] });
  const many = new Directory("many", {
    children: Array.from({ length: 200 }, (_, i) => new StaticFile(`file-${String(i).padStart(3, "0")}`, `${i}\n`)),
  });
  const root = new Directory("/", {
    children: [
      new StaticFile("hello", "hello, world\n"),
      new StaticFile("ro", "read only\n"),
      new GeneratedFile("gen", () => `generated at ${Date.now()}\n`),
      log,
      tail,
      big,
      ctl,
      notes,
      deep,
      many,
    ],
  });
  return { root, log, tail, big, ctl, notes };
}

export interface TestServer {
  readonly server: NineServer;
  readonly listener: Listener;
  readonly addr: string;
  readonly port: number;
  readonly refusals: ServerEvent[];
  readonly tree: ReturnType<typeof sampleTree>;
  close(): Promise<void>;
}

/** Starts a server on 127.0.0.1:0 that admits aname "ok" and refuses others. */
export async function startServer(options: { limits?: Partial<ServerLimits>; attach?: (aname: string) => Attachment } = {}): Promise<TestServer> {
  const tree = sampleTree();
  const refusals: ServerEvent[] = [];
  const server = new NineServer({
    root: tree.root,
    attach: (req) => {
      if (options.attach) return options.attach(req.aname);
      if (req.aname !== "ok") throw new PermissionError(`bad ticket ${JSON.stringify(req.aname)}`);
      return { caller: { role: "queen", subject: "queen" } };
    },
    onRefusal: (e) => refusals.push(e),
    ...(options.limits ? { limits: options.limits } : {}),
  });
  const listener = await listen("tcp!127.0.0.1!0", (conn, peer) => server.accept(conn, peer.remote));
  const port = listener.address.kind === "unix" ? 0 : listener.address.port;
  return {
    server,
    listener,
    addr: listener.dialString,
    port,
    refusals,
    tree,
    async close() {
      server.close();
      await listener.close();
    },
  };
}

type Untagged<T> = T extends unknown ? Omit<T, "tag"> : never;

/** A raw 9P connection for conformance tests. */
export class RawConn {
  readonly socket: net.Socket;
  readonly replies: RMessage[] = [];
  readonly #splitter = new FrameSplitter(16 << 20);
  readonly #waiters: Array<() => void> = [];
  closed = false;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on("data", (chunk: Buffer) => {
      this.#splitter.push(chunk);
      for (let f = this.#splitter.next(); f; f = this.#splitter.next()) {
        const r = decodeMessage(f);
        if (!r.ok) throw r.error;
        this.replies.push(r.message as RMessage);
      }
      this.#wake();
    });
    socket.on("close", () => {
      this.closed = true;
      this.#wake();
    });
    socket.on("error", () => {});
  }

  static async open(port: number): Promise<RawConn> {
    const socket = net.connect(port, "127.0.0.1");
    await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
    return new RawConn(socket);
  }

  /** Opens, negotiates `dialect`, attaches fid 0 with aname "ok". */
  static async ready(port: number, dialect: Dialect, msize = 65536): Promise<RawConn> {
    const c = await RawConn.open(port);
    const v = await c.call({ type: "Tversion", msize, version: dialect }, 0xffff);
    if (v.type !== "Rversion" || v.version !== dialect) throw new Error(`version failed: ${JSON.stringify(v)}`);
    const a = await c.call({ type: "Tattach", fid: 0, afid: 0xffffffff, uname: "queen", aname: "ok", ...(dialect === "9P2000.L" ? { nUname: 0 } : {}) });
    if (a.type !== "Rattach") throw new Error(`attach failed: ${JSON.stringify(a)}`);
    return c;
  }

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }

  #tag = 1;

  /** Sends a message with `tag` (default: a fresh one). Returns the tag. */
  send(msg: Untagged<TMessage>, tag = this.#tag++): number {
    this.socket.write(encodeMessage({ ...msg, tag } as Message));
    return tag;
  }

  /** Writes raw bytes. */
  sendRaw(bytes: Uint8Array): void {
    this.socket.write(bytes);
  }

  /** The next reply with `tag`, removed from the queue. */
  async reply(tag: number, timeoutMs = 5000): Promise<RMessage> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.replies.findIndex((r) => r.tag === tag);
      if (i >= 0) return this.replies.splice(i, 1)[0]!;
      if (this.closed) throw new Error(`connection closed before reply to tag ${tag}`);
      if (Date.now() > deadline) throw new Error(`no reply to tag ${tag} within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 50);
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Sends and awaits the reply. */
  async call(msg: Untagged<TMessage>, tag?: number): Promise<RMessage> {
    return this.reply(this.send(msg, tag));
  }

  /** Resolves when the server has closed the connection. */
  async waitClosed(timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed) {
      if (Date.now() > deadline) throw new Error("connection still open");
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  close(): void {
    this.socket.destroy();
  }
}

/** The error class of an error reply in either dialect, e.g. "not found" or errno 2. */
export function errorOf(r: RMessage): string | number | undefined {
  if (r.type === "Rerror") return r.ename;
  if (r.type === "Rlerror") return r.ecode;
  return undefined;
}
