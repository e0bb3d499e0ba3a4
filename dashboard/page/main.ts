/**
 * The dashboard's page: the fleet list (`#/`) and an appliance's page
 * (`#/a/<id>`), rendered with Preact + htm from the server's event stream.
 * Every action posts to `/api/ctl` and shows its result or its error.
 * @module
 */
import "uplot/dist/uPlot.min.css";
import "./style.css";
import { h, render } from "preact";
import { useEffect, useMemo, useState } from "preact/hooks";
import htm from "htm";
import type { ApplianceView, CtlResponse, DashEvent, WorkerView } from "../model.ts";
import { openStream, postCtl } from "./api.ts";
import { Sparkline } from "./spark.ts";
import { EMPTY, ago, fold, numericFields, type PageState } from "./store.ts";

const html = htm.bind(h);

type Result = { readonly label: string; readonly response: CtlResponse; readonly seq: number; readonly pending: boolean } | undefined;

function useHash(): string {
  const [hash, setHash] = useState(location.hash);
  useEffect(() => {
    const on = (): void => setHash(location.hash);
    addEventListener("hashchange", on);
    return () => removeEventListener("hashchange", on);
  }, []);
  return hash;
}

function useNow(ms: number): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(t);
  }, []);
  return now;
}

function ResultLine({ result }: { result: Result }) {
  if (!result) return html`<div id="result" class="result" data-seq="0" data-pending="false"></div>`;
  const r = result.response;
  return html`<div id="result" class=${`result ${result.pending ? "pending" : r.ok ? "ok" : "error"}`} role="status" data-seq=${result.seq} data-pending=${String(result.pending)}>${result.label}: ${result.pending ? "…" : r.ok ? r.result : r.error}</div>`;
}

function FleetList({ state, now }: { state: PageState; now: number }) {
  const [text, setText] = useState("");
  const [live, setLive] = useState("all");
  const [life, setLife] = useState("all");
  // An appliance the server holds over 9P and that also publishes to the fleet is one row: the 9P one.
  const driven = new Set([...state.appliances.values()].flatMap((a) => (a.source === "9p" && a.fleetId ? [a.fleetId] : [])));
  const rows = [...state.appliances.values()]
    .filter((a) => a.source === "9p" || !driven.has(a.id))
    .filter((a) => (live === "all" ? true : live === "live" ? a.live === "live" : a.live !== "live"))
    .filter((a) => (life === "all" ? true : a.lifecycle === life))
    .filter((a) => text === "" || a.id.includes(text) || (a.version ?? "").includes(text))
    .sort((a, b) => a.id.localeCompare(b.id));
  return html`<section>
    <h2>Appliances</h2>
    <div class="filters">
      <input id="filter-text" placeholder="filter by id or version" value=${text} onInput=${(e: Event) => setText((e.target as HTMLInputElement).value)} />
      <select id="filter-live" value=${live} onChange=${(e: Event) => setLive((e.target as HTMLSelectElement).value)}>
        <option value="all">live and dead</option><option value="live">live only</option><option value="dead">not live</option>
      </select>
      <select id="filter-lifecycle" value=${life} onChange=${(e: Event) => setLife((e.target as HTMLSelectElement).value)}>
        <option value="all">any lifecycle</option>
        ${["BOOTING", "DEGRADED", "ONLINE", "DRAINING", "QUIESCED", "OFFLINE"].map((s) => html`<option value=${s}>${s}</option>`)}
      </select>
    </div>
    <table id="fleet">
      <thead><tr><th>appliance</th><th>state</th><th>version</th><th>slot / update</th><th>lifecycle</th><th>last seen</th><th>workers</th><th>via</th></tr></thead>
      <tbody>
        ${rows.map(
          (a) => html`<tr data-id=${a.id} data-live=${a.live} class=${`row-${a.live}`}>
            <td>${a.source === "9p" ? html`<a href=${`#/a/${encodeURIComponent(a.id)}`}>${a.id}</a>` : a.id}</td>
            <td class="live" title=${a.error ?? ""}>${a.live}${a.vm?.status === "paused" ? " (paused)" : ""}</td>
            <td>${a.version ?? "?"}</td>
            <td>${a.slot ?? "-"}${a.update ? ` / ${a.update}` : ""}</td>
            <td>${a.lifecycle ?? "?"}</td>
            <td>${ago(a.lastSeenMs, now)}</td>
            <td class="count">${a.workerCount}</td>
            <td>${a.source === "9p" ? (a.fleetId ? `9P, fleet ${a.fleetId}` : "9P") : "fleet"}</td>
          </tr>`,
        )}
      </tbody>
    </table>
    ${rows.length === 0 ? html`<p>No appliance matches.</p>` : null}
  </section>`;
}

function SpawnForm({ app, act }: { app: ApplianceView; act: (label: string, cmd: Record<string, unknown>) => void }) {
  const [program, setProgram] = useState(app.programs.includes("heartbeat") ? "heartbeat" : (app.programs[0] ?? ""));
  const [ticks, setTicks] = useState("");
  const [ttl, setTtl] = useState("");
  const [ops, setOps] = useState("");
  const [restart, setRestart] = useState(false);
  const [gpu, setGpu] = useState("");
  const [mem, setMem] = useState("");
  // Numbers go as numbers; anything else goes as typed, and the server says what is wrong with it.
  const num = (t: string): unknown => (/^[0-9]+$/.test(t.trim()) ? Number(t.trim()) : t);
  const submit = (e: Event): void => {
    e.preventDefault();
    const cmd: Record<string, unknown> = { spawn: program };
    if (ticks !== "") cmd.ticks = num(ticks);
    const budget: Record<string, unknown> = {};
    if (ttl !== "") budget.ttl_s = num(ttl);
    if (ops !== "") budget.ops = num(ops);
    if (Object.keys(budget).length > 0) cmd.budget = budget;
    if (restart) cmd.restart = true;
    const gpuId = gpu || app.gpus[0]?.id;
    if (mem !== "" && gpuId) cmd.lease = { gpu_id: gpuId, mem_mb: num(mem) };
    act(`spawn ${program}`, cmd);
  };
  const field = (id: string, label: string, value: string, set: (v: string) => void) =>
    html`<label>${label} <input id=${id} size="6" value=${value} onInput=${(e: Event) => set((e.target as HTMLInputElement).value)} /></label>`;
  return html`<form id="spawn-form" class="spawn" onSubmit=${submit}>
    <label>program <select id="spawn-program" value=${program} onChange=${(e: Event) => setProgram((e.target as HTMLSelectElement).value)}>
      ${app.programs.map((p) => html`<option value=${p}>${p}</option>`)}
    </select></label>
    ${field("spawn-ticks", "ticks", ticks, setTicks)} ${field("spawn-ttl", "ttl s", ttl, setTtl)} ${field("spawn-ops", "ops", ops, setOps)}
    ${app.gpus.length > 0
      ? html`<label>GPU lease <select id="spawn-gpu" value=${gpu || app.gpus[0]!.id} onChange=${(e: Event) => setGpu((e.target as HTMLSelectElement).value)}>
          ${app.gpus.map((g) => html`<option value=${g.id}>${g.id}</option>`)}
        </select></label> ${field("spawn-mem", "MiB", mem, setMem)}`
      : null}
    <label><input type="checkbox" id="spawn-restart" checked=${restart} onChange=${(e: Event) => setRestart((e.target as HTMLInputElement).checked)} /> restart</label>
    <button type="submit" id="spawn-submit">Spawn</button>
  </form>`;
}

function Workers({ app, state, act }: { app: ApplianceView; state: PageState; act: (label: string, cmd: Record<string, unknown>) => void }) {
  const telemetry = state.telemetry.get(app.id);
  const fields = useMemo(() => {
    const all = new Set<string>();
    for (const pts of telemetry?.values() ?? []) for (const f of numericFields(pts)) all.add(f);
    return [...all].sort();
  }, [telemetry]);
  const [field, setField] = useState("tick");
  const shown = fields.includes(field) ? field : (fields[0] ?? field);
  const [killId, setKillId] = useState("");
  return html`<section>
    <h3>Workers</h3>
    <div class="filters">
      <label>sparkline of <select id="spark-field" value=${shown} onChange=${(e: Event) => setField((e.target as HTMLSelectElement).value)}>
        ${fields.map((f) => html`<option value=${f}>${f}</option>`)}
      </select></label>
      <form id="kill-form" onSubmit=${(e: Event) => { e.preventDefault(); act(`kill ${killId}`, { kill: killId.trim() }); }}>
        <input id="kill-id" placeholder="worker-3" size="10" value=${killId} onInput=${(e: Event) => setKillId((e.target as HTMLInputElement).value)} />
        <button type="submit" id="kill-submit">Kill by id</button>
      </form>
    </div>
    <table id="workers">
      <thead><tr><th>worker</th><th>role</th><th>state</th><th>budget left</th><th>restarts</th><th>${shown}</th><th>last</th><th></th></tr></thead>
      <tbody>
        ${app.workers.map((w: WorkerView) => {
          const pts = telemetry?.get(w.id) ?? [];
          const last = pts[pts.length - 1];
          const value = last?.data[shown];
          return html`<tr data-worker=${w.id} data-status=${w.status}>
            <td>${w.id}</td><td>${w.role}</td><td class="status">${w.status}</td><td>${w.budgetLeft}</td><td>${w.restarts}</td>
            <td>${h(Sparkline, { points: pts, field: shown })}</td>
            <td class="last" data-tick=${String(last?.data.tick ?? "")}>${value === undefined ? "" : String(value)}</td>
            <td>${w.status === "running" ? html`<button class="kill" onClick=${() => act(`kill ${w.id}`, { kill: w.id })}>Kill</button>` : null}</td>
          </tr>`;
        })}
      </tbody>
    </table>
  </section>`;
}

function KillSwitch({ app, act }: { app: ApplianceView; act: (label: string, cmd: Record<string, unknown>) => void }) {
  const [name, setName] = useState("");
  if (!app.vm) return null;
  return html`<section id="kill-switch">
    <h3>Kill switch (QEMU)</h3>
    <p>VM: <b id="vm-status">${app.vm.status}</b></p>
    <button id="vm-pause" onClick=${() => act("pause", { vm: "pause" })}>Pause</button>
    <button id="vm-resume" onClick=${() => act("resume", { vm: "resume" })}>Resume</button>
    <input id="vm-name" placeholder="snapshot name" value=${name} onInput=${(e: Event) => setName((e.target as HTMLInputElement).value)} />
    <button id="vm-snapshot" onClick=${() => act(`snapshot ${name}`, { vm: "snapshot", name })}>Snapshot</button>
    <button id="vm-restore" onClick=${() => act(`restore ${name}`, { vm: "restore", name })}>Restore</button>
    <p>snapshots: <span id="vm-snapshots">${app.vm.snapshots.join(", ") || "none"}</span></p>
  </section>`;
}

function AppliancePage({ app, state, act, now }: { app: ApplianceView; state: PageState; act: (label: string, cmd: Record<string, unknown>) => void; now: number }) {
  const log = state.logs.get(app.id) ?? [];
  const audit = state.audit.filter((e) => e.appliance === app.id);
  const mb = (v: string | undefined): string => (v === undefined ? "?" : `${(Number(v) / 1048576).toFixed(1)} MiB`);
  return html`<section id="appliance" data-id=${app.id}>
    <p><a href="#/">← all appliances</a></p>
    <h2>${app.id} <span id="live" class=${`badge ${app.live}`}>${app.live}</span></h2>
    ${app.error ? html`<p class="error">${app.error}</p>` : null}
    <div class="grid">
      <div><h3>Lifecycle</h3>
        <p><b id="lifecycle">${app.lifecycle ?? "?"}</b> ${app.lifecycleReason ? `(${app.lifecycleReason})` : ""} ${app.lifecycleSince ? html`<small>since ${app.lifecycleSince}</small>` : null}</p>
        <button id="lc-cordon" onClick=${() => act("cordon", { lifecycle: "cordon" })}>Cordon</button>
        <button id="lc-drain" onClick=${() => act("drain", { lifecycle: "drain" })}>Drain</button>
        <button id="lc-resume" onClick=${() => act("resume", { lifecycle: "resume" })}>Resume</button>
      </div>
      <div><h3>Memory and CPU</h3>
        <p>rss ${mb(app.mem.rss)} · heap ${mb(app.mem.heap_used)} of ${mb(app.mem.heap_total)} · workers ${app.mem.workers ?? "?"}/${app.mem.max_workers ?? "?"}</p>
        <p id="cpu">root task cpu ${app.cpu ?? "?"}</p>
        <p>last seen ${ago(app.lastSeenMs, now)}</p>
      </div>
      <${KillSwitch} app=${app} act=${act} />
    </div>
    <details><summary>/proc/boot</summary><pre id="boot">${app.bootText ?? ""}</pre></details>
    <details><summary>Sessions (${app.sessions.length})</summary><pre id="sessions">${app.sessions.join("\n")}</pre></details>
    <section><h3>Spawn</h3><${SpawnForm} app=${app} act=${act} /></section>
    <${Workers} app=${app} state=${state} act=${act} />
    ${app.gpus.length > 0
      ? html`<section><h3>GPUs</h3><table id="gpus"><thead><tr><th>gpu</th><th>name</th><th>lease</th><th>job status</th></tr></thead>
        <tbody>${app.gpus.map((g) => html`<tr data-gpu=${g.id}><td>${g.id}</td><td>${g.name}</td><td class="lease"><code>${g.lease || "-"}</code></td><td class="job"><code>${g.status || "-"}</code></td></tr>`)}</tbody></table></section>`
      : html`<section><h3>GPUs</h3><p>No GPU mounted at /gpu.</p></section>`}
    <div class="grid2">
      <section><h3>/log/queen.log</h3><pre id="log" class="tail" title="newest first">${log.slice(-100).reverse().join("\n")}</pre></section>
      <section><h3>Actions from this dashboard</h3><pre id="audit" class="tail">${audit.slice(-60).reverse().map((e) => `${e.ts} ${e.ok ? "ok" : "refused"} ${e.command} → ${e.result}`).join("\n")}</pre></section>
    </div>
  </section>`;
}

/** Actions posted so far: each result line carries its number (`data-seq`). */
let actions = 0;

function App() {
  const [state, setState] = useState<PageState>(EMPTY);
  const [result, setResult] = useState<Result>(undefined);
  const hash = useHash();
  const now = useNow(1000);
  useEffect(() => {
    // Events are folded once per frame: a hundred workers' telemetry each
    // second makes one render per frame, not one per event.
    let pending: DashEvent[] = [];
    let frame = 0;
    const flush = (): void => {
      frame = 0;
      const events = pending;
      pending = [];
      setState((s) => events.reduce(fold, s));
    };
    const es = openStream(
      (event) => {
        pending.push(event);
        if (frame === 0) frame = document.hidden ? window.setTimeout(flush, 250) : requestAnimationFrame(flush);
      },
      (stream) => setState((s) => ({ ...s, stream: stream === "lost" ? "lost" : "open" })),
    );
    return () => es.close();
  }, []);
  const m = /^#\/a\/(.+)$/.exec(hash);
  const id = m ? decodeURIComponent(m[1]!) : undefined;
  const app = id === undefined ? undefined : state.appliances.get(id);
  const act = (label: string, cmd: Record<string, unknown>): void => {
    if (!id) return;
    const seq = ++actions;
    setResult({ label, response: { ok: true, result: "" }, seq, pending: true });
    void postCtl(id, cmd).then((response) => setResult((now) => (now && now.seq > seq ? now : { label, response, seq, pending: false })));
  };
  return html`<header><h1><a href="#/">Cohesix</a></h1><span id="stream" class=${`badge ${state.stream}`}>${state.stream === "open" ? "live" : state.stream}</span></header>
    <${ResultLine} result=${result} />
    <main>${id === undefined ? html`<${FleetList} state=${state} now=${now} />` : app ? html`<${AppliancePage} app=${app} state=${state} act=${act} now=${now} />` : html`<p>No appliance ${id} on this dashboard. <a href="#/">All appliances</a></p>`}</main>`;
}

const root = document.getElementById("app")!;
root.textContent = "";
render(html`<${App} />`, root);
