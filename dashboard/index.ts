/**
 * The operator dashboard (DESIGN §2, §12; docs/dashboard.md): a host web
 * server that holds a 9P session to each appliance and a subscription to the
 * fleet's MQTT records, pushes live updates to its pages over Server-Sent
 * Events, and takes every action through one audited endpoint,
 * `POST /api/ctl`. The browser never holds the queen key. Other folders
 * import from this file only; the page's own source is in `page/`.
 *
 * @example
 * ```ts
 * import { startDashboard } from "../dashboard/index.ts";
 * const dash = await startDashboard({ listen: "127.0.0.1:0", appliances, assetsDir: "dist/dashboard" });
 * console.log(`READY ${dash.url}`, dash.loginUrl);
 * ```
 * @module
 */
export * from "./limits.ts";
export * from "./model.ts";
export * from "./records.ts";
export * from "./auth.ts";
export * from "./hub.ts";
export * from "./appliance.ts";
export * from "./actions.ts";
export * from "./fleet.ts";
export * from "./server.ts";
