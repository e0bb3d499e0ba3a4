/**
 * The `/update/` directory as 9P files: `ctl` (a command per write, the
 * reply read back on the same fid), `data` (write-only, the bundle's bytes
 * at increasing offsets, one writer at a time) and `status` (key=value
 * lines). The service does the work; these nodes only carry bytes.
 * @module
 */
import { BaseNode, CtlFile, Directory, GeneratedFile, PermissionError, type CtlHandler, type OpenFile, type OpenFlags, type RequestContext } from "../nine-door/index.ts";
import type { UpdateService } from "./update-service.ts";

/**
 * `/update/data`: write-only (perm 0220), open for writing by one fid at a
 * time (the service answers `busy:` for a second), each write handed to the
 * service at its offset.
 */
class UpdateDataFile extends BaseNode {
  readonly #service: UpdateService;

  constructor(service: UpdateService) {
    super("data", { mode: 0o220 });
    this.#service = service;
  }

  override open(flags: OpenFlags, ctx: RequestContext): OpenFile {
    this.checkAccess(flags, { read: false, write: true, ignoreTruncate: true });
    const release = this.#service.openData(ctx.caller.subject);
    return {
      read: () => {
        throw new PermissionError("read: /update/data is write-only; read /update/status");
      },
      write: async (offset, data, wctx) => {
        const n = await this.#service.write(offset, data, wctx.caller);
        this.markWritten(wctx.caller.subject);
        return n;
      },
      close: release,
    };
  }
}

/**
 * Builds `/update/` for `service`; `ctl` hands each command to `ctl` (the
 * appliance unwraps signed envelopes there, then calls `service.command`).
 *
 * @example
 * ```ts
 * const dir = updateDirectory(service, { ctl: (text, ctx) => service.command(text, ctx.caller) });
 * root.add(dir);
 * ```
 */
export function updateDirectory(service: UpdateService, options: { ctl: CtlHandler }): Directory {
  return new Directory("update", {
    perm: 0o550,
    children: [new CtlFile("ctl", options.ctl, { perm: 0o220 }), new UpdateDataFile(service), new GeneratedFile("status", () => service.status(), { perm: 0o440 })],
  });
}
