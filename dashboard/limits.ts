/**
 * The dashboard server's limits (docs/security.md, "Dashboard"): every bound
 * on what a browser — hostile until it holds the session cookie, careless
 * after — can make the server hold, each with its default and its knob
 * (`cohesix dashboard --limit NAME=N`).
 * @module
 */
import { InvalidError } from "../nine-door/index.ts";

/** The limits in force; every field has a default in {@link DEFAULT_LIMITS}. */
export interface DashboardLimits {
  /** Largest request body accepted (`POST /api/ctl`), bytes; more is `413`. */
  readonly max_body_bytes: number;
  /** Event streams (open pages) at once; one more is `503`. */
  readonly max_streams: number;
  /** Bytes an event stream may have waiting for a slow page before that page is dropped. */
  readonly stream_buffer_bytes: number;
  /** Signed-in browser sessions kept at once; the oldest goes first. */
  readonly max_sessions: number;
  /** Lifetime of a signed-in session, seconds. */
  readonly session_ttl_s: number;
  /** Lines of each appliance's `/log/queen.log` kept for a new page. */
  readonly log_lines: number;
  /** Telemetry points kept per worker for a new page's sparkline. */
  readonly telemetry_points: number;
  /** Largest telemetry line or log line forwarded, bytes; longer ones are cut. */
  readonly max_line_bytes: number;
  /** Workers whose telemetry is followed per appliance. */
  readonly max_followed_workers: number;
  /** How often `/proc/*` is read, ms. */
  readonly poll_ms: number;
  /** How often telemetry and the log are read for appends, ms. */
  readonly tail_ms: number;
  /** Dashboard audit lines kept in memory for new pages. */
  readonly audit_lines: number;
  /** Appliances the fleet list keeps (from MQTT births). */
  readonly max_fleet: number;
}

/** The defaults. */
export const DEFAULT_LIMITS: DashboardLimits = {
  max_body_bytes: 16 * 1024,
  max_streams: 32,
  stream_buffer_bytes: 1 << 20,
  max_sessions: 16,
  session_ttl_s: 12 * 3600,
  log_lines: 200,
  telemetry_points: 120,
  max_line_bytes: 4096,
  max_followed_workers: 256,
  poll_ms: 1000,
  tail_ms: 100,
  audit_lines: 200,
  max_fleet: 1024,
};

/**
 * The limits with `NAME=N` settings applied over the defaults.
 *
 * @throws {InvalidError} an unknown name or a value that is not a positive integer.
 *
 * @example
 * ```ts
 * limitsOf(["max_streams=4"]).max_streams; // 4
 * ```
 */
export function limitsOf(settings: readonly string[] = []): DashboardLimits {
  const out: Record<string, number> = { ...DEFAULT_LIMITS };
  for (const s of settings) {
    const m = /^([a-z_]+)=([0-9]+)$/.exec(s);
    if (!m || !(m[1]! in DEFAULT_LIMITS)) throw new InvalidError(`dashboard limit ${JSON.stringify(s)}: expected NAME=N with NAME one of ${Object.keys(DEFAULT_LIMITS).join(", ")}`);
    const n = Number(m[2]);
    if (!Number.isSafeInteger(n) || n <= 0) throw new InvalidError(`dashboard limit ${m[1]}: ${m[2]} is not a positive integer`);
    out[m[1]!] = n;
  }
  return out as unknown as DashboardLimits;
}
