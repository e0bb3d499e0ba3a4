/**
 * The dashboard's HTTP server (`node:http`, or `node:https` with TLS): the
 * page, its event stream and the one endpoint that changes state.
 *
 * | route | does |
 * | --- | --- |
 * | `GET /login?token=…` | swaps the one-time token for a session cookie, then `303 /` |
 * | `GET /`, `/app.js`, `/app.css` | the page and its bundle |
 * | `GET /api/state` | what a page starts from, as JSON (a `hello` event) |
 * | `GET /api/events` | Server-Sent Events: `hello`, then `appliance`, `telemetry`, `log`, `audit` |
 * | `POST /api/ctl` | `{"appliance": ID, "command": {…}}` → `{"ok":true,"result":…}` or `{"ok":false,"error":…}` |
 *
 * Everything but `/login` needs the session cookie (else `401`); a request
 * whose Host is not this server's, or a POST whose Origin is not, is `403`.
 * Handlers return replies; only {@link Dashboard}'s request loop writes.
 * @module
 */
import { readFile } from "node:fs/promises";
import { createServer as createHttp, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createHttps } from "node:https";
import { isIP } from "node:net";
import { join } from "node:path";
import { InvalidError, NineError, NotFoundError, PermissionError, TooBigError } from "../nine-door/index.ts";
import { actionOf, parseCtlRequest, runAction } from "./actions.ts";
import { ApplianceWatch, type ApplianceSource } from "./appliance.ts";
import { Auth, checkRequest } from "./auth.ts";
import { FleetView, type FleetFeed } from "./fleet.ts";
import { EventHub } from "./hub.ts";
import { DEFAULT_LIMITS, type DashboardLimits } from "./limits.ts";
import type { ApplianceView, AuditEntry, CtlResponse, DashEvent } from "./model.ts";
import { PAGE_HTML, SIGN_IN_HTML } from "./page-html.ts";

/** Options of {@link startDashboard}. */
export interface DashboardOptions {
  /** `HOST:PORT` (port 0 picks a free one); default `127.0.0.1:8080`. */
  readonly listen?: string;
  /** The appliances the server holds a 9P session to. */
  readonly appliances: readonly ApplianceSource[];
  /** The fleet's records (MQTT), when a broker is given. */
  readonly fleet?: FleetFeed;
  /** The folder holding the page's bundle, `app.js` and `app.css`. */
  readonly assetsDir: string;
  readonly limits?: DashboardLimits;
  /** Serve HTTPS with this key and certificate (PEM). */
  readonly tls?: { readonly key: string | Buffer; readonly cert: string | Buffer };
  /** The login token, instead of a random one. */
  readonly token?: string;
  /** Called with every action a page posts, after it ran (the CLI writes these to stderr). */
  readonly onAudit?: (entry: AuditEntry) => void;
}

/** A running dashboard. */
export interface Dashboard {
  /** `http://HOST:PORT/` */
  readonly url: string;
  /** `http://HOST:PORT/login?token=…`, good once. */
  readonly loginUrl: string;
  readonly port: number;
  close(): Promise<void>;
}

/** A reply: only the request loop writes it. */
interface Reply {
  readonly status: number;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: string | Buffer;
  /** The route took the response over (an event stream). */
  readonly taken?: true;
}

const SECURITY_HEADERS = {
  "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "referrer-policy": "no-referrer",
  "cache-control": "no-store",
};

/** Whether a listen host is loopback. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "");
  return h === "localhost" || h === "::1" || (isIP(h) === 4 && h.startsWith("127."));
}

/**
 * `HOST:PORT` as host and port.
 *
 * @throws {InvalidError} anything else.
 *
 * @example
 * ```ts
 * parseListen("127.0.0.1:0"); // { host: "127.0.0.1", port: 0 }
 * ```
 */
export function parseListen(text: string): { host: string; port: number } {
  const m = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$/.exec(text);
  const port = Number(m?.[2]);
  if (!m || port > 65535) throw new InvalidError(`--listen ${JSON.stringify(text)}: expected HOST:PORT, e.g. 127.0.0.1:8080 (port 0 picks a free one)`);
  return { host: m[1]!.replace(/^\[|\]$/g, ""), port };
}

function json(status: number, value: unknown): Reply {
  return { status, headers: { "content-type": "application/json; charset=utf-8" }, body: JSON.stringify(value) };
}

/** The HTTP status of an error class. */
export function statusOf(err: unknown): number {
  if (!(err instanceof NineError)) return 500;
  switch (err.errorClass) {
    case "invalid":
      return 400;
    case "permission":
      return 403;
    case "not found":
      return 404;
    case "busy":
      return 409;
    case "too big":
      return 413;
    case "closed":
      return 503;
    default:
      return 500;
  }
}

/** One line for the page: `class: what failed: detail`. */
function errorLine(err: unknown): string {
  const text = err instanceof NineError ? err.message : `io: ${(err as Error).message ?? String(err)}`;
  return text.split("\n")[0]!;
}

/**
 * Starts the dashboard: dials every appliance, listens, and resolves once
 * it serves.
 *
 * @throws {InvalidError} a non-loopback `listen` without TLS and a token.
 *
 * @example
 * ```ts
 * const dash = await startDashboard({ listen: "127.0.0.1:0", appliances: [source], assetsDir: "dist/dashboard" });
 * console.log(dash.loginUrl); // http://127.0.0.1:41234/login?token=…
 * ```
 */
export async function startDashboard(options: DashboardOptions): Promise<Dashboard> {
  const limits = options.limits ?? DEFAULT_LIMITS;
  const { host, port } = parseListen(options.listen ?? "127.0.0.1:8080");
  if (!isLoopback(host) && (options.tls === undefined || options.token === undefined)) {
    throw new PermissionError(`--listen ${host}:${port} is not loopback: the dashboard serves the network only with TLS and a token you set (--tls-key, --tls-cert and --token-file); or listen on 127.0.0.1`);
  }
  if (options.token !== undefined && options.token.length < 32) throw new InvalidError("the login token must be at least 32 characters");
  const scheme = options.tls ? "https" : "http";
  const auth = new Auth({ limits, ...(options.token !== undefined ? { token: options.token } : {}), secure: options.tls !== undefined });
  const hub = new EventHub({ limits });
  const audit: AuditEntry[] = [];
  const watches = new Map<string, ApplianceWatch>();
  for (const source of options.appliances) {
    if (watches.has(source.dial)) continue;
    watches.set(source.dial, new ApplianceWatch(source, { limits, publish: (e) => hub.publish(e) }));
  }
  const fleet = options.fleet ? new FleetView(options.fleet, { limits, publish: (e) => hub.publish(e) }) : undefined;
  const assets = new Map<string, { type: string; body: Buffer }>();
  for (const [name, type] of [
    ["app.js", "text/javascript; charset=utf-8"],
    ["app.css", "text/css; charset=utf-8"],
  ] as const) {
    const body = await readFile(join(options.assetsDir, name)).catch(() => {
      throw new NotFoundError(`the dashboard's page is not built: ${join(options.assetsDir, name)} is missing (npm run build)`);
    });
    assets.set(`/${name}`, { type, body });
  }

  const hello = (): DashEvent => {
    const list: ApplianceView[] = [...watches.values()].map((w) => w.view);
    if (fleet) list.push(...fleet.views().filter((v) => !watches.has(v.id)));
    return {
      type: "hello",
      appliances: list,
      logs: Object.fromEntries([...watches.values()].map((w) => [w.id, w.log])),
      telemetry: Object.fromEntries([...watches.values()].map((w) => [w.id, w.telemetry])),
      audit,
    };
  };

  const recordAudit = (entry: AuditEntry): void => {
    audit.push(entry);
    if (audit.length > limits.audit_lines) audit.splice(0, audit.length - limits.audit_lines);
    hub.publish({ type: "audit", entry });
    options.onAudit?.(entry);
  };

  const ctl = async (body: string): Promise<Reply> => {
    let appliance = "?";
    let command = body.slice(0, 512);
    try {
      const request = parseCtlRequest(body);
      appliance = request.appliance;
      command = JSON.stringify(request.command);
      const watch = watches.get(request.appliance) ?? [...watches.values()].find((w) => w.view.fleetId === request.appliance);
      if (!watch) throw new NotFoundError(`no appliance ${JSON.stringify(request.appliance)} on this dashboard${fleet?.has(request.appliance) ? " over 9P (fleet appliances are shown, not driven: give its address with --addr)" : ""}`);
      const result = await runAction(actionOf(request.command, watch), watch);
      recordAudit({ ts: new Date().toISOString(), appliance, command, ok: true, result });
      return json(200, { ok: true, result } satisfies CtlResponse);
    } catch (err) {
      const error = errorLine(err);
      recordAudit({ ts: new Date().toISOString(), appliance, command, ok: false, result: error });
      return json(statusOf(err), { ok: false, error } satisfies CtlResponse);
    }
  };

  const route = async (req: IncomingMessage, res: ServerResponse, body: string): Promise<Reply> => {
    const url = new URL(req.url ?? "/", `${scheme}://localhost`);
    if (url.pathname === "/login" && req.method === "GET") {
      const cookie = auth.redeem(url.searchParams.get("token") ?? "");
      if (!cookie) return { status: 401, headers: { "content-type": "text/plain; charset=utf-8" }, body: "permission: this login link is wrong or was used already: restart cohesix dashboard for a new one\n" };
      return { status: 303, headers: { "set-cookie": cookie, location: "/" } };
    }
    if (!auth.signedIn(req)) {
      if (url.pathname.startsWith("/api/")) return json(401, { ok: false, error: "permission: not signed in: open the login URL cohesix dashboard printed" });
      return { status: 401, headers: { "content-type": "text/html; charset=utf-8" }, body: SIGN_IN_HTML };
    }
    if (url.pathname === "/api/ctl") {
      if (req.method !== "POST") return json(405, { ok: false, error: "invalid: /api/ctl takes POST" });
      if (!/^application\/json\b/.test(req.headers["content-type"] ?? "")) return json(415, { ok: false, error: "invalid: /api/ctl takes Content-Type: application/json" });
      return ctl(body);
    }
    if (req.method !== "GET" && req.method !== "HEAD") return json(405, { ok: false, error: `invalid: ${req.method} ${url.pathname} is not a route` });
    if (url.pathname === "/favicon.ico") return { status: 204 };
    if (url.pathname === "/") return { status: 200, headers: { "content-type": "text/html; charset=utf-8" }, body: PAGE_HTML };
    const asset = assets.get(url.pathname);
    if (asset) return { status: 200, headers: { "content-type": asset.type }, body: asset.body };
    if (url.pathname === "/api/state") return json(200, hello());
    if (url.pathname === "/api/events") {
      if (hub.full) return json(503, { ok: false, error: `busy: ${limits.max_streams} pages are open already (max_streams)` });
      hub.open(res, hello());
      return { status: 200, taken: true };
    }
    return json(404, { ok: false, error: `not found: ${url.pathname}` });
  };

  const readBody = (req: IncomingMessage): Promise<string> =>
    new Promise((resolve, reject) => {
      const declared = Number(req.headers["content-length"] ?? 0);
      if (declared > limits.max_body_bytes) {
        reject(new TooBigError(`the request body is ${declared} bytes, more than ${limits.max_body_bytes} (max_body_bytes)`));
        return;
      }
      const parts: Buffer[] = [];
      let size = 0;
      req.on("data", (chunk: Buffer) => {
        size += chunk.length;
        if (size > limits.max_body_bytes) {
          reject(new TooBigError(`the request body is more than ${limits.max_body_bytes} bytes (max_body_bytes)`));
          req.pause();
          return;
        }
        parts.push(chunk);
      });
      req.on("end", () => resolve(Buffer.concat(parts).toString("utf8")));
      req.on("error", reject);
    });

  const hosts = new Set<string>();
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    let reply: Reply;
    try {
      const refusal = checkRequest(req, { hosts, scheme, anyHost: !isLoopback(host) });
      if (refusal) reply = json(refusal.status, { ok: false, error: refusal.message });
      else {
        const body = req.method === "POST" ? await readBody(req) : "";
        reply = await route(req, res, body);
      }
    } catch (err) {
      reply = json(statusOf(err), { ok: false, error: errorLine(err) });
    }
    if (reply.taken) return;
    if (res.headersSent) return;
    res.writeHead(reply.status, { ...SECURITY_HEADERS, ...reply.headers, ...(reply.status === 413 ? { connection: "close" } : {}) });
    res.end(req.method === "HEAD" ? undefined : reply.body);
  };

  const server: Server = options.tls ? createHttps({ key: options.tls.key, cert: options.tls.cert }, (req, res) => void handle(req, res)) : createHttp((req, res) => void handle(req, res));
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const bound = (server.address() as { port: number }).port;
  const shown = host.includes(":") ? `[${host}]` : host;
  hosts.add(`${shown}:${bound}`);
  if (isLoopback(host)) for (const h of ["127.0.0.1", "localhost", "[::1]"]) hosts.add(`${h}:${bound}`);
  for (const w of watches.values()) w.start();
  fleet?.start();
  const url = `${scheme}://${shown}:${bound}/`;
  return {
    url,
    loginUrl: `${url}login?token=${auth.token}`,
    port: bound,
    close: async () => {
      for (const w of watches.values()) w.close();
      fleet?.close();
      hub.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
