/**
 * The root task's boot-time check of a flashed disk's boot manifest: the
 * signed list verifies against the release key baked into the image, every
 * listed file's size and sha256 match, and /proc/boot shows the digest and
 * the outcome. Each failure names what differs, and never throws.
 */
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NineClient, dial } from "../../nine-door/index.ts";
import {
  BOOT_MANIFEST_FORMAT,
  canonicalJson,
  checkBootManifest,
  manifestVersion,
  mintTicket,
  parseBootManifest,
  serveAppliance,
  signDocument,
  writeKeyPair,
  type BootArtefact,
} from "../../root-task/index.ts";

let dir = "";
let releaseKey: Uint8Array;
let releasePub = "";
let otherKey: Uint8Array;

const sha = (data: string | Uint8Array): string => createHash("sha256").update(data).digest("hex");

/** A boot folder with two files and a manifest of them signed by `key`; `edit` changes the list first. */
async function bootDir(name: string, key: Uint8Array, edit: (list: BootArtefact[]) => BootArtefact[] = (l) => l): Promise<string> {
  const boot = join(dir, name);
  await mkdir(join(boot, "cohesix"), { recursive: true });
  await mkdir(join(boot, "extlinux"), { recursive: true });
  const files = { "/Image": "kernel bytes", "/extlinux/extlinux.conf": "label cohesix\n" };
  for (const [p, text] of Object.entries(files)) await writeFile(join(boot, p), text);
  const list = edit(Object.entries(files).map(([path, text]) => ({ path, size: text.length, sha256: sha(text) })));
  const doc = signDocument({ format: BOOT_MANIFEST_FORMAT, board: "test", artefacts: list }, key);
  await writeFile(join(boot, "cohesix", "manifest.json"), `${JSON.stringify(doc, null, 2)}\n`);
  return boot;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "cohesix-bootcheck-"));
  const pair = await writeKeyPair(join(dir, "keys"), { name: "release" });
  releaseKey = pair.privateKey;
  releasePub = pair.publicPath;
  otherKey = (await writeKeyPair(join(dir, "other"), { name: "release" })).privateKey;
});

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("canonicalJson", () => {
  it("sorts keys at every depth and drops whitespace, so one value has one byte string", () => {
    expect(canonicalJson({ b: 1, a: [{ z: true, y: null }, "x"] })).toBe('{"a":[{"y":null,"z":true},"x"],"b":1}');
  });

  it("refuses non-integers, which have more than one JSON spelling", () => {
    expect(() => canonicalJson({ a: 1.5 })).toThrow(/integers only/);
  });
});

describe("a boot manifest's version", () => {
  const doc = (extra: Record<string, unknown>): string => JSON.stringify({ ...signDocument({ format: BOOT_MANIFEST_FORMAT, board: "test", artefacts: [] }, releaseKey), ...extra });

  it("is read from the optional version field, and a manifest without one reads as 0.0.0", () => {
    const signed = signDocument({ format: BOOT_MANIFEST_FORMAT, board: "test", version: "1.2.0", artefacts: [] }, releaseKey);
    expect(manifestVersion(parseBootManifest(JSON.stringify(signed), "m.json"))).toBe("1.2.0");
    expect(manifestVersion(parseBootManifest(doc({}), "m.json"))).toBe("0.0.0");
  });

  it("refuses a version that is not one to four dotted whole numbers, naming the field", () => {
    for (const version of ["", "1.x", "1..2", "01.2", "1.2.3.4.5", "-1", 7, "1.2.0-rc1"]) {
      expect(() => parseBootManifest(doc({ version }), "m.json"), String(version)).toThrow(/^invalid: boot manifest m\.json: version must be dotted whole numbers/);
    }
  });
});

describe("checkBootManifest()", () => {
  it("passes a boot partition whose files match the list signed by the release key, and reports its digest", async () => {
    const boot = await bootDir("good", releaseKey);
    const check = await checkBootManifest({ bootDir: boot, releasePub });
    expect(check.status).toBe("ok");
    expect(check.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
  });

  it("fails a list signed by another key", async () => {
    const check = await checkBootManifest({ bootDir: await bootDir("other-key", otherKey), releasePub });
    expect(check.status).toMatch(/^FAILED: signed by key [0-9a-f]{16}, not by the release key [0-9a-f]{16}$/);
  });

  it("fails a changed file, naming it and both digests", async () => {
    const boot = await bootDir("changed", releaseKey);
    await writeFile(join(boot, "Image"), "kernel byteZ");
    expect((await checkBootManifest({ bootDir: boot, releasePub })).status).toMatch(/^FAILED: \/Image sha256 [0-9a-f]{64} differs from the manifest's [0-9a-f]{64}$/);
  });

  it("fails a listed file that is missing, and a file of another size", async () => {
    const missing = await bootDir("missing", releaseKey, (l) => [...l, { path: "/initrd.gz", size: 3, sha256: sha("abc") }]);
    expect((await checkBootManifest({ bootDir: missing, releasePub })).status).toBe("FAILED: /initrd.gz is missing from the boot partition");
    const size = await bootDir("size", releaseKey);
    await writeFile(join(size, "Image"), "longer kernel bytes");
    expect((await checkBootManifest({ bootDir: size, releasePub })).status).toMatch(/^FAILED: \/Image is 19 bytes, the manifest says 12$/);
  });

  it("fails a list edited after signing, and a folder without a manifest", async () => {
    const boot = await bootDir("edited", releaseKey);
    const path = join(boot, "cohesix", "manifest.json");
    const doc = JSON.parse(await readFile(path, "utf8")) as Record<string, unknown>;
    await writeFile(path, JSON.stringify({ ...doc, board: "other" }));
    expect((await checkBootManifest({ bootDir: boot, releasePub })).status).toBe("FAILED: the signature does not verify: the manifest was changed after it was signed");
    const empty = join(dir, "empty");
    await mkdir(empty, { recursive: true });
    const none = await checkBootManifest({ bootDir: empty, releasePub });
    expect(none.digest).toBe("none");
    expect(none.status).toMatch(/^FAILED: cannot read .*empty\/cohesix\/manifest\.json/);
  });
});

describe("/proc/boot", () => {
  it("shows the boot manifest's digest and check, as they stand when read", async () => {
    const queen = await writeKeyPair(join(dir, "queen"), { name: "queen" });
    let check = { digest: "pending", status: "pending" };
    const running = await serveAppliance({ board: "host", listen: "127.0.0.1:0", stateDir: join(dir, "state"), queenPub: queen.publicPath, bootManifest: () => check });
    const client = await NineClient.connect(await dial(running.dialString));
    try {
      const root = await client.attach({ uname: "queen", aname: mintTicket({ role: "queen", sub: "queen" }, queen.privateKey) });
      expect(await root.readText("/proc/boot")).toMatch(/^manifest=pending\nmanifest_check=pending$/m);
      check = { digest: `sha256:${"ab".repeat(32)}`, status: "ok" };
      expect(await root.readText("/proc/boot")).toMatch(new RegExp(`^manifest=sha256:${"ab".repeat(32)}\nmanifest_check=ok$`, "m"));
    } finally {
      client.close();
      await running.stop("test done");
    }
  });
});
