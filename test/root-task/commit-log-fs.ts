/**
 * Test helper: the commit log's real file layer with its fdatasync
 * replaced, for suites that count, slow down or fail the log's syncs.
 */
import { nodeCommitLogFs, type CommitLogFs } from "../../root-task/index.ts";

/**
 * Node's file layer whose files' `datasync` runs `datasync(real)` instead,
 * where `real` is the file's own fdatasync.
 *
 * @example
 * ```ts
 * const fs = withDatasync(() => Promise.reject(new Error("EIO: disk on fire")));
 * ```
 */
export function withDatasync(datasync: (real: () => Promise<void>) => Promise<void>): CommitLogFs {
  return {
    ...nodeCommitLogFs,
    async openFile(path, flags) {
      const h = await nodeCommitLogFs.openFile(path, flags);
      return {
        write: (b, o, l, p) => h.write(b, o, l, p),
        truncate: (l) => h.truncate(l),
        close: () => h.close(),
        datasync: () => datasync(() => h.datasync()),
      };
    },
  };
}
