/**
 * `cohesix log verify DIR` and `cohesix log show DIR`: offline checks of a
 * state directory's commit log. With the directory's boot key present the
 * HMAC of every record is checked too (the key is derived, never stored).
 * @module
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { InvalidError } from "../nine-door/index.ts";
import { commitLogKey, formatRecord, readPrivateKey, showLog, verifyLog } from "../root-task/index.ts";
import { parse, str, UsageError } from "./args.ts";

type Out = (text: string | Uint8Array) => void;

async function keyFor(dir: string, keyPath: string | undefined): Promise<Uint8Array | undefined> {
  const path = keyPath ?? join(dir, "boot.key");
  if (keyPath === undefined && !existsSync(path)) return undefined;
  return commitLogKey(await readPrivateKey(path));
}

/** `log verify DIR [--boot-key FILE]` / `log show DIR [--from N] [--limit N]`. */
export async function log(argv: readonly string[], out: Out): Promise<void> {
  const [sub, ...rest] = argv;
  if (sub !== "verify" && sub !== "show") throw new UsageError("expected log verify DIR or log show DIR");
  const p = parse(rest, { "boot-key": { type: "string" }, from: { type: "string" }, limit: { type: "string" }, kind: { type: "string" } }, { min: 1, max: 1 });
  const dir = p.positionals[0]!;
  const key = await keyFor(dir, str(p, "boot-key"));
  if (sub === "verify") {
    const r = await verifyLog(dir, key ? { key } : {});
    out(
      [
        `records=${r.records}`,
        `last_seq=${r.lastSeq}`,
        `head=${r.headHash}`,
        `hmac=${r.hmac}`,
        ...(r.tornTail ? [`torn_tail=${JSON.stringify(r.tornTail)}`] : []),
        `ok=${r.ok}`,
        "",
      ].join("\n"),
    );
    if (!r.ok) throw new InvalidError(`commit log damaged: ${r.error ?? "unknown damage"}`);
    return;
  }
  const num = (name: string): number | undefined => {
    const v = str(p, name);
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < 0) throw new UsageError(`--${name} must be a non-negative integer`);
    return n;
  };
  const from = num("from");
  const limit = num("limit");
  const kind = str(p, "kind");
  const { records, report } = await showLog(dir, {
    ...(key ? { key } : {}),
    ...(from !== undefined ? { from } : {}),
    ...(limit !== undefined ? { limit } : {}),
    ...(kind ? { kinds: [kind] } : {}),
  });
  for (const r of records) out(`${formatRecord(r)}\n`);
  if (!report.ok) throw new InvalidError(`commit log damaged: ${report.error ?? "unknown damage"}`);
}
