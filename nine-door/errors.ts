/**
 * NineDoor error classes. Every refusal the server sends belongs to one class
 * a program can match: the 9P2000 Rerror text starts with the class name, and
 * 9P2000.L answers a fixed errno per class (DESIGN §3). This file is the one
 * place that maps classes to the wire.
 *
 * @example
 * ```ts
 * throw new NotFoundError("/worker/worker-9");
 * // 9P2000:   Rerror "not found: /worker/worker-9"
 * // 9P2000.L: Rlerror ENOENT (2)
 * ```
 * @module
 */

/** The error classes of DESIGN §3, as they appear at the start of an Rerror. */
export type ErrorClass =
  | "permission"
  | "not found"
  | "busy"
  | "invalid"
  | "too big"
  | "closed"
  | "not supported"
  | "io";

/** Linux errno values used by 9P2000.L (Rlerror). */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  EIO: 5,
  EBADF: 9,
  EAGAIN: 11,
  EACCES: 13,
  EBUSY: 16,
  EEXIST: 17,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  E2BIG: 7,
  ENOSPC: 28,
  EROFS: 30,
  ERANGE: 34,
  ENAMETOOLONG: 36,
  ENOSYS: 38,
  ENOTEMPTY: 39,
  ENODATA: 61,
  EOPNOTSUPP: 95,
  ESHUTDOWN: 108,
} as const;

const errnoByClass: Record<ErrorClass, number> = {
  permission: Errno.EACCES,
  "not found": Errno.ENOENT,
  busy: Errno.EBUSY,
  invalid: Errno.EINVAL,
  "too big": Errno.E2BIG,
  closed: Errno.ESHUTDOWN,
  "not supported": Errno.EOPNOTSUPP,
  io: Errno.EIO,
};

const classByErrno = new Map<number, ErrorClass>([
  ...Object.entries(errnoByClass).map(([k, v]) => [v, k as ErrorClass] as const),
  // Precise errnos servers send for the same classes.
  [Errno.EISDIR, "invalid"],
  [Errno.ENOTDIR, "invalid"],
  [Errno.EEXIST, "invalid"],
  [Errno.ENAMETOOLONG, "invalid"],
  [Errno.EBADF, "not found"],
  [Errno.EPERM, "permission"],
  [Errno.EROFS, "permission"],
  [Errno.ENOSYS, "not supported"],
  [Errno.ENOSPC, "too big"],
  [Errno.EAGAIN, "busy"],
]);

/** Options every error class takes. */
export interface ErrorOptions {
  /** An errno more precise than the class default (e.g. ENOTDIR), for .L. */
  readonly errno?: number;
  readonly cause?: unknown;
}

/**
 * Base class of every error NineDoor answers on the wire. `detail` is the
 * human part after the colon; `message` is `"<class>: <detail>"`.
 */
export class NineError extends Error {
  readonly errorClass: ErrorClass;
  readonly detail: string;
  /** An errno more precise than the class default (e.g. ENOTDIR), for .L. */
  readonly errno: number;

  constructor(errorClass: ErrorClass, detail: string, options?: ErrorOptions) {
    super(`${errorClass}: ${detail}`, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = "NineError";
    this.errorClass = errorClass;
    this.detail = detail;
    this.errno = options?.errno ?? errnoByClass[errorClass];
  }
}

/** The caller may not do this (role, ticket, mode). */
export class PermissionError extends NineError {
  constructor(detail: string, options?: ErrorOptions) {
    super("permission", detail, options);
    this.name = "PermissionError";
  }
}

/** No such file, fid or worker. */
export class NotFoundError extends NineError {
  constructor(detail: string, options?: ErrorOptions) {
    super("not found", detail, options);
    this.name = "NotFoundError";
  }
}

/** A resource is in use or a limit on concurrent things is reached. */
export class BusyError extends NineError {
  constructor(detail: string, options?: ErrorOptions) {
    super("busy", detail, options);
    this.name = "BusyError";
  }
}

/** The request is malformed or makes no sense here. */
export class InvalidError extends NineError {
  constructor(detail: string, options?: ErrorOptions) {
    super("invalid", detail, options);
    this.name = "InvalidError";
  }
}

/** A size limit (msize, buffered bytes, retention) is exceeded. */
export class TooBigError extends NineError {
  constructor(detail: string, options?: ErrorOptions) {
    super("too big", detail, options);
    this.name = "TooBigError";
  }
}

/** The session or the file was closed (revocation, shutdown). */
export class ClosedError extends NineError {
  constructor(detail: string, options?: ErrorOptions) {
    super("closed", detail, options);
    this.name = "ClosedError";
  }
}

/** The operation makes no sense on a synthetic namespace (mknod, locks…). */
export class NotSupportedError extends NineError {
  constructor(detail: string, options?: ErrorOptions) {
    super("not supported", detail, options);
    this.name = "NotSupportedError";
  }
}

const subclasses: Record<ErrorClass, new (detail: string, options?: ErrorOptions) => NineError> = {
  permission: PermissionError,
  "not found": NotFoundError,
  busy: BusyError,
  invalid: InvalidError,
  "too big": TooBigError,
  closed: ClosedError,
  "not supported": NotSupportedError,
  io: class IoError extends NineError {
    constructor(detail: string, options?: ErrorOptions) {
      super("io", detail, options);
    }
  },
};

/**
 * The error of class `cls`, as its own subclass, so `instanceof
 * ClosedError` works on errors rebuilt from the wire.
 *
 * @example
 * ```ts
 * errorOfClass("busy", "GPU-0 is fully leased") instanceof BusyError; // true
 * ```
 */
export function errorOfClass(cls: ErrorClass, detail: string, options?: ErrorOptions): NineError {
  return new subclasses[cls](detail, options);
}

/**
 * `err` as the subclass of its class (a plain `NineError("busy", …)`
 * becomes a `BusyError`); anything not a NineError becomes an `io:` error.
 */
export function typedError(err: unknown): NineError {
  if (!(err instanceof NineError)) return toNineError(err);
  if (err.constructor !== NineError) return err;
  return errorOfClass(err.errorClass, err.detail, { errno: err.errno, cause: err.cause });
}

/**
 * Turns anything thrown by a handler into a NineError. Unknown throws become
 * `io:` errors so the connection lives on; the original is kept as `cause`.
 */
export function toNineError(err: unknown): NineError {
  if (err instanceof NineError) return err;
  if (err instanceof Error && err.name === "AbortError") {
    return new NineError("closed", "request cancelled", { cause: err });
  }
  const detail = err instanceof Error ? err.message : String(err);
  return new NineError("io", detail, { cause: err });
}

/** The 9P2000 Rerror text for an error: `"<class>: <detail>"`. */
export function rerrorText(err: NineError): string {
  return err.message;
}

/** The 9P2000.L errno for an error. */
export function lerrorCode(err: NineError): number {
  return err.errno;
}

/**
 * Rebuilds a NineError from an Rerror string received by a client. Text that
 * starts with a known class keeps that class; anything else is `io`.
 */
export function fromRerror(text: string): NineError {
  const colon = text.indexOf(": ");
  if (colon > 0) {
    const cls = text.slice(0, colon);
    if (cls in errnoByClass) return errorOfClass(cls as ErrorClass, text.slice(colon + 2));
  }
  return errorOfClass("io", text);
}

/** Rebuilds a NineError from an Rlerror errno received by a client. */
export function fromLerror(errno: number): NineError {
  const cls = classByErrno.get(errno) ?? "io";
  const name = Object.entries(Errno).find(([, v]) => v === errno)?.[0] ?? `errno ${errno}`;
  return errorOfClass(cls, name, { errno });
}
