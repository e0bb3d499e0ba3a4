/**
 * Refusals of peers without a ticket, rate-limited and aggregated (issue
 * #11 item 3): such a peer can make the appliance refuse as fast as it can
 * send frames, and each refusal used to be one audit line. Each source (a
 * peer's address without its port) has a token bucket: a burst of refusals
 * is written in full, then one more line per refill interval; the rest are
 * counted, and when the window ends one line per source says how many:
 * `refused 4812 more attaches from tcp!1.2.3.4 in 10 s: permission: …`,
 * and one `summary` line totals the window.
 * At most `maxSources` sources are tracked at once; refusals from further
 * sources are only counted, into one `other peers` line per window. So a
 * flood costs a bounded number of lines per window, however fast and from
 * however many addresses it comes.
 * @module
 */

/** Limits of {@link RefusalAudit}. */
export interface RefusalLimits {
  /** Length of an aggregation window, ms (default 10,000). */
  readonly windowMs: number;
  /** Sources tracked at once; refusals from others are only counted (default 16). */
  readonly maxSources: number;
  /** Refusals of one source written in full before it is rate-limited (default 32). */
  readonly burst: number;
  /** One more refusal of a rate-limited source is written per this many ms (default 5,000). */
  readonly refillMs: number;
}

/** Defaults of {@link RefusalLimits}. */
export const DEFAULT_REFUSAL_LIMITS: RefusalLimits = { windowMs: 10_000, maxSources: 16, burst: 32, refillMs: 5_000 };

/** One refusal to report. */
export interface Refusal {
  /** Who: `peer tcp!1.2.3.4!5678`. */
  readonly who: string;
  /** What is rate-limited and aggregated over: the peer's address without its port. */
  readonly source: string;
  /** The request, e.g. `Tattach`. */
  readonly request: string;
  /** The path, when there is one. */
  readonly path?: string;
  /** The error's message (`permission: …`). */
  readonly message: string;
}

/**
 * What a line is: a refusal written in full (`first`), a source's count at
 * the end of a window (`count`), or the window's one-line total (`summary`).
 */
export type RefusalLineKind = "first" | "count" | "summary";

interface Source {
  tokens: number;
  refilledMs: number;
  n: number;
  request: string;
  message: string;
}

/** `Tattach` → `attaches`, `Twalk` → `walks`. */
function plural(request: string): string {
  const verb = request.replace(/^T/, "").toLowerCase();
  return verb.endsWith("h") ? `${verb}es` : `${verb}s`;
}

/**
 * The address part of a peer string: `tcp!1.2.3.4!5678` → `tcp!1.2.3.4`,
 * `tls!::1!443` → `tls!::1`; anything else as is.
 *
 * @example
 * ```ts
 * peerSource("tcp!127.0.0.1!40211"); // "tcp!127.0.0.1"
 * ```
 */
export function peerSource(peer: string): string {
  const m = /^(.*)![0-9]+$/.exec(peer);
  return m ? m[1]! : peer;
}

/**
 * Rate-limits and aggregates refusals into a bounded number of audit lines.
 *
 * @example
 * ```ts
 * const refusals = new RefusalAudit((line) => app.audit(line), { windowMs: 10_000 });
 * refusals.report({ who: "peer tcp!1.2.3.4!5", source: "tcp!1.2.3.4", request: "Tattach", message: "permission: bad ticket" });
 * ```
 */
export class RefusalAudit {
  readonly #write: (line: string, kind: RefusalLineKind) => void;
  readonly #limits: RefusalLimits;
  readonly #now: () => number;
  readonly #sources = new Map<string, Source>();
  #others = { n: 0, request: "", message: "", sources: new Set<string>() };
  #timer: NodeJS.Timeout | undefined;

  constructor(write: (line: string, kind: RefusalLineKind) => void, limits: Partial<RefusalLimits> = {}, options: { now?: () => number } = {}) {
    this.#write = write;
    this.#limits = { ...DEFAULT_REFUSAL_LIMITS, ...limits };
    this.#now = options.now ?? Date.now;
  }

  /** Reports one refusal: written now while its source has tokens, else counted. */
  report(r: Refusal): void {
    const now = this.#now();
    let s = this.#sources.get(r.source);
    if (!s) {
      if (this.#sources.size >= this.#limits.maxSources) this.#pruneIdle(now);
      if (this.#sources.size >= this.#limits.maxSources) {
        // Bounded: only a few distinct other sources are remembered per window.
        if (this.#others.sources.size < 1024) this.#others.sources.add(r.source);
        this.#others.n++;
        this.#others.request = r.request;
        this.#others.message = r.message;
        this.#arm();
        return;
      }
      s = { tokens: this.#limits.burst, refilledMs: now, n: 0, request: r.request, message: r.message };
      this.#sources.set(r.source, s);
    }
    this.#refill(s, now);
    if (s.tokens > 0) {
      s.tokens--;
      this.#write(`refused ${r.who} ${r.request}${r.path ? ` ${r.path}` : ""}: ${r.message}`, "first");
      return;
    }
    s.n++;
    s.request = r.request;
    s.message = r.message;
    this.#arm();
  }

  /** Writes the counts of the window now and starts a new one. */
  flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const secs = `${Math.round(this.#limits.windowMs / 100) / 10} s`;
    let total = 0;
    let peers = 0;
    for (const [source, c] of this.#sources) {
      if (c.n > 0) {
        this.#write(`refused ${c.n} more ${plural(c.request)} from ${source} in ${secs}: ${c.message}`, "count");
        total += c.n;
        peers++;
      }
      c.n = 0;
    }
    const o = this.#others;
    const many = o.sources.size >= 1024 ? "1024+" : String(o.sources.size);
    if (o.n > 0) {
      this.#write(`refused ${o.n} requests from ${many} other peers in ${secs} (past the ${this.#limits.maxSources} tracked): last ${o.request}: ${o.message}`, "count");
      total += o.n;
    }
    if (total > 0) {
      const from = o.n > 0 ? `${peers} peer(s) and ${many} other(s)` : `${peers} peer(s)`;
      this.#write(`refused ${total} more requests without a ticket from ${from} in ${secs}: counts in /log/refused.log`, "summary");
    }
    this.#others = { n: 0, request: "", message: "", sources: new Set() };
    this.#pruneIdle(this.#now());
  }

  /** Flushes and stops the timer (shutdown). */
  close(): void {
    this.flush();
  }

  #refill(s: Source, now: number): void {
    const add = Math.floor((now - s.refilledMs) / this.#limits.refillMs);
    if (add <= 0) return;
    s.tokens = Math.min(this.#limits.burst, s.tokens + add);
    s.refilledMs = s.tokens === this.#limits.burst ? now : s.refilledMs + add * this.#limits.refillMs;
  }

  /** Forgets sources whose bucket is full again and that have nothing counted. */
  #pruneIdle(now: number): void {
    for (const [source, s] of this.#sources) {
      this.#refill(s, now);
      if (s.n === 0 && s.tokens >= this.#limits.burst) this.#sources.delete(source);
    }
  }

  #arm(): void {
    if (this.#timer) return;
    this.#timer = setTimeout(() => this.flush(), this.#limits.windowMs);
    this.#timer.unref();
  }
}
