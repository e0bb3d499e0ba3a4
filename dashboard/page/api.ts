/**
 * The page's two ways to the server: the event stream, and `POST /api/ctl`.
 * @module
 */
import type { CtlResponse, DashEvent } from "../model.ts";

/** Opens the event stream; `onEvent` gets each event, `onState` the stream's state. EventSource reconnects by itself. */
export function openStream(onEvent: (event: DashEvent) => void, onState: (state: "open" | "lost") => void): EventSource {
  const es = new EventSource("/api/events");
  for (const type of ["hello", "appliance", "telemetry", "log", "audit"]) {
    es.addEventListener(type, (e) => onEvent(JSON.parse((e as MessageEvent<string>).data) as DashEvent));
  }
  es.onerror = () => onState("lost");
  return es;
}

/** Posts one command for one appliance; resolves with the server's answer, never throws. */
export async function postCtl(appliance: string, command: Record<string, unknown>): Promise<CtlResponse> {
  try {
    const res = await fetch("/api/ctl", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ appliance, command }),
      credentials: "same-origin",
    });
    const text = await res.text();
    try {
      return JSON.parse(text) as CtlResponse;
    } catch {
      return { ok: false, error: `io: the server answered ${res.status}: ${text.slice(0, 200)}` };
    }
  } catch (err) {
    return { ok: false, error: `io: the dashboard server did not answer: ${(err as Error).message}` };
  }
}
