import { describe, expect, test } from "vitest";
import { FrameSplitter, NineClient, dial, encodeMessage } from "../../../nine-door/index.ts";
import { startServer } from "../harness.ts";

describe("FrameSplitter allocator", () => {
  test("a frame that spans chunks is assembled in the memory the allocator gives for its tag", () => {
    const frame = encodeMessage({ type: "Rread", tag: 9, data: Buffer.alloc(1000, 3) });
    const mine = Buffer.alloc(4096);
    const seen: Array<[number, number]> = [];
    const s = new FrameSplitter(1 << 16);
    s.setAllocator((size, tag) => {
      seen.push([size, tag]);
      return tag === 9 ? mine : undefined;
    });
    s.push(frame.subarray(0, 5));
    expect(s.next()).toBeUndefined(); // waits for the tag before choosing memory
    s.push(frame.subarray(5, 600));
    expect(s.next()).toBeUndefined();
    s.push(frame.subarray(600));
    const out = s.next()!;
    expect(seen).toEqual([[frame.length, 9]]);
    expect(out.buffer).toBe(mine.buffer);
    expect(Buffer.from(out).equals(frame)).toBe(true);
  });

  test("an allocator that declines (or offers too little) leaves a fresh allocation", () => {
    const frame = encodeMessage({ type: "Rread", tag: 4, data: Buffer.alloc(100, 1) });
    const small = Buffer.alloc(10);
    const s = new FrameSplitter(1 << 16);
    s.setAllocator(() => small);
    s.push(frame.subarray(0, 50));
    expect(s.next()).toBeUndefined();
    s.push(frame.subarray(50));
    const out = s.next()!;
    expect(out.buffer).not.toBe(small.buffer);
    expect(Buffer.from(out).equals(frame)).toBe(true);
  });
});

describe("NineClient receiveBuffer", () => {
  test("rpc() receives a large Rread into the caller's buffer, reusable for the next read", async () => {
    const srv = await startServer();
    const client = await NineClient.connect(await dial(srv.addr), { msize: (1 << 20) + 24, dialect: "9P2000.L" });
    try {
      srv.tree.big.set(Buffer.from(Array.from({ length: 3 << 20 }, (_, i) => i % 251)));
      const root = await client.attach({ aname: "ok" });
      const big = await (await root.walk("big")).open("r");
      const buf = Buffer.alloc(client.msize);
      for (const offset of [0, 1 << 20, 5]) {
        const r = await client.rpc({ type: "Tread", fid: big.fid, offset, count: client.iounit }, undefined, { receiveBuffer: buf });
        expect(r.data.length).toBe(client.iounit);
        expect(r.data.buffer).toBe(buf.buffer);
        expect(r.data[0]).toBe(offset % 251);
        expect(r.data[r.data.length - 1]).toBe((offset + client.iounit - 1) % 251);
      }
      // Without the option, replies get their own memory as before.
      const plain = await big.read(0);
      expect(plain.buffer).not.toBe(buf.buffer);
      expect(plain[1]).toBe(1);
    } finally {
      client.close();
      await srv.close();
    }
  });
});

describe("FrameSplitter read-into mode", () => {
  test("reads committed to readTarget() yield the same frames as pushed chunks, large ones assembled in place", () => {
    const small = encodeMessage({ type: "Rclunk", tag: 1 });
    const large = encodeMessage({ type: "Rread", tag: 2, data: Buffer.alloc(200_000, 5) });
    const stream = Buffer.concat([small, large, small]);
    const s = new FrameSplitter(1 << 20);
    const out: Uint8Array[] = [];
    let at = 0;
    let direct = 0;
    while (at < stream.length) {
      const target = s.readTarget();
      const n = Math.min(target.length, 30_000, stream.length - at);
      if (target.length >= 100_000) direct++;
      target.set(stream.subarray(at, at + n));
      at += n;
      s.commit(n);
      for (let f = s.next(); f !== undefined; f = s.next()) out.push(f);
    }
    // Views handed out earlier are still intact after later reads.
    expect(out.map((f) => Buffer.from(f).toString("hex"))).toEqual([small, large, small].map((f) => f.toString("hex")));
    expect(direct).toBeGreaterThan(0); // the large frame's tail was read straight into its buffer
  });

  test("frames handed out as views stay intact while many more reads follow", () => {
    const frames = Array.from({ length: 400 }, (_, i) =>
      encodeMessage({ type: "Rread", tag: i, data: Buffer.alloc(i % 3 === 0 ? 70_000 : 300, i & 0xff) }),
    );
    const stream = Buffer.concat(frames);
    const s = new FrameSplitter(1 << 20);
    const out: Uint8Array[] = [];
    let at = 0;
    let step = 0;
    while (at < stream.length) {
      const target = s.readTarget();
      const n = Math.min(target.length, [7, 1000, 65536, 3][step++ % 4]!, stream.length - at);
      target.set(stream.subarray(at, at + n));
      at += n;
      s.commit(n);
      for (let f = s.next(); f !== undefined; f = s.next()) out.push(f);
    }
    expect(out.length).toBe(frames.length);
    out.forEach((f, i) => expect(Buffer.from(f).equals(frames[i]!)).toBe(true));
  });
});

describe("NineClient.dial", () => {
  test("a client dialled in place reads, walks and stats like a connected one", async () => {
    const srv = await startServer();
    const client = await NineClient.dial(srv.addr, { msize: (1 << 16) + 24 });
    try {
      const root = await client.attach({ aname: "ok" });
      expect(await root.readText("hello")).toBe("hello, world\n");
      const big = await root.readFile("big");
      expect(big.length).toBe(3 << 20);
      expect(big.every((b) => b === 7)).toBe(true);
      expect((await root.statPath("a/b/c")).length).toBe(5);
      const buf = Buffer.alloc(client.msize);
      const f = await (await root.walk("big")).open("r");
      const r = await client.rpc({ type: "Tread", fid: f.fid, offset: 0, count: client.iounit }, undefined, { receiveBuffer: buf });
      expect(r.data.buffer).toBe(buf.buffer);
      expect(r.data.length).toBe(client.iounit);
    } finally {
      client.close();
      await srv.close();
    }
  });
});
