/**
 * Parsers for what `nvidia-smi` prints, kept apart from running it so they
 * can be tested on recorded output:
 *
 * - `--query-gpu=<GPU_QUERY_FIELDS> --format=csv,noheader,nounits` → {@link parseGpuCsv}
 * - `--query-compute-apps=pid,gpu_uuid,used_memory --format=csv,noheader,nounits` → {@link parseComputeApps}
 * - `-q -x` (the `nvidia_smi_log` XML) → {@link parseSmiXml}
 * - a failed run (exit code and text) → {@link smiFailure}
 *
 * nvidia-smi writes `[N/A]` or `[Not Supported]` (or, in XML, `N/A`) for a
 * value a device does not report; those become `undefined`, never `NaN`.
 * @module
 */
import type { GpuInfo, GpuProcess } from "./types.ts";
import { GpuDriverError, SmiFormatError } from "./types.ts";

/** The `--query-gpu` fields, in the order {@link parseGpuCsv} expects. */
export const GPU_QUERY_FIELDS = [
  "index",
  "uuid",
  "name",
  "memory.total",
  "memory.used",
  "driver_version",
  "pci.bus_id",
  "mig.mode.current",
] as const;

/** The `--query-compute-apps` fields, in the order {@link parseComputeApps} expects. */
export const APPS_QUERY_FIELDS = ["pid", "gpu_uuid", "used_memory"] as const;

/**
 * One line of `--query-gpu` output.
 *
 * @example
 * ```ts
 * const [row] = parseGpuCsv("0, GPU-5e1b…, NVIDIA A100-SXM4-40GB, 40960, 0, 535.129.03, 00000000:07:00.0, Disabled\n");
 * row.memoryTotalMb; // 40960
 * ```
 */
export interface SmiGpuRow {
  readonly index: number;
  readonly uuid: string;
  readonly name: string;
  readonly memoryTotalMb: number | undefined;
  readonly memoryUsedMb: number | undefined;
  readonly driverVersion: string;
  readonly pciBusId: string | undefined;
  /** `Enabled`, `Disabled`, or `undefined` when the GPU has no MIG (`[N/A]`). */
  readonly migMode: string | undefined;
}

/**
 * Parses `--query-gpu=index,uuid,name,memory.total,memory.used,driver_version,pci.bus_id,mig.mode.current
 * --format=csv,noheader,nounits`. Throws {@link SmiFormatError} naming the
 * line when a row has the wrong number of fields or a bad index.
 *
 * @example
 * ```ts
 * parseGpuCsv(stdout).map((r) => r.name); // ["NVIDIA A100-SXM4-40GB"]
 * ```
 */
export function parseGpuCsv(text: string): SmiGpuRow[] {
  return csvLines(text).map((line, i) => {
    const f = splitCsv(line);
    if (f.length !== GPU_QUERY_FIELDS.length) {
      throw new SmiFormatError(`nvidia-smi --query-gpu line ${i + 1}: expected ${GPU_QUERY_FIELDS.length} fields (${GPU_QUERY_FIELDS.join(",")}), got ${f.length}: ${line.slice(0, 120)}`);
    }
    const [index, uuid, name, total, used, driver, bus, mig] = f as [string, string, string, string, string, string, string, string];
    const idx = integer(index);
    if (idx === undefined) throw new SmiFormatError(`nvidia-smi --query-gpu line ${i + 1}: index ${JSON.stringify(index)} is not a number`);
    if (value(uuid) === undefined) throw new SmiFormatError(`nvidia-smi --query-gpu line ${i + 1}: no uuid`);
    return {
      index: idx,
      uuid,
      name: value(name) ?? `GPU ${idx}`,
      memoryTotalMb: integer(total),
      memoryUsedMb: integer(used),
      driverVersion: value(driver) ?? "unknown",
      pciBusId: value(bus),
      migMode: value(mig),
    };
  });
}

/**
 * Parses `--query-compute-apps=pid,gpu_uuid,used_memory --format=csv,noheader,nounits`.
 * No processes is an empty output (or, on some drivers, a line saying so),
 * which parses to `[]`. `used_memory` of `[N/A]` (MIG) becomes `undefined`.
 *
 * @example
 * ```ts
 * parseComputeApps("4242, GPU-5e1b…, 1024\n"); // [{ pid: 4242, gpuUuid: "GPU-5e1b…", usedMb: 1024 }]
 * ```
 */
export function parseComputeApps(text: string): GpuProcess[] {
  const out: GpuProcess[] = [];
  csvLines(text).forEach((line, i) => {
    if (/^no running (compute )?processes found/i.test(line)) return;
    const f = splitCsv(line);
    if (f.length !== APPS_QUERY_FIELDS.length) {
      throw new SmiFormatError(`nvidia-smi --query-compute-apps line ${i + 1}: expected 3 fields (pid,gpu_uuid,used_memory), got ${f.length}: ${line.slice(0, 120)}`);
    }
    const [pid, uuid, used] = f as [string, string, string];
    const p = integer(pid);
    if (p === undefined) throw new SmiFormatError(`nvidia-smi --query-compute-apps line ${i + 1}: pid ${JSON.stringify(pid)} is not a number`);
    out.push({ pid: p, gpuUuid: uuid, usedMb: integer(used) });
  });
  return out;
}

/**
 * A MIG device from `-q -x` (`<mig_devices><mig_device>`).
 *
 * @example
 * ```ts
 * const mig: SmiMigDevice = { index: 0, gpuInstanceId: 1, computeInstanceId: 0, smCount: 42, memoryTotalMb: 19968, memoryUsedMb: 13, uuid: undefined };
 * ```
 */
export interface SmiMigDevice {
  readonly index: number;
  readonly gpuInstanceId: number;
  readonly computeInstanceId: number;
  /** Present in newer drivers only; otherwise CUDA addresses it as `MIG-<GPU-UUID>/<gi>/<ci>`. */
  readonly uuid: string | undefined;
  readonly smCount: number | undefined;
  readonly memoryTotalMb: number | undefined;
  readonly memoryUsedMb: number | undefined;
}

/**
 * A process from `-q -x` (`<processes><process_info>`).
 *
 * @example
 * ```ts
 * const p: SmiXmlProcess = { pid: 4242, type: "C", name: "python3", usedMb: 1024, gpuInstanceId: undefined, computeInstanceId: undefined };
 * ```
 */
export interface SmiXmlProcess {
  readonly pid: number;
  readonly type: string;
  readonly name: string;
  readonly usedMb: number | undefined;
  readonly gpuInstanceId: number | undefined;
  readonly computeInstanceId: number | undefined;
}

/**
 * One `<gpu>` of `-q -x`.
 *
 * @example
 * ```ts
 * parseSmiXml(xml).gpus[0].migDevices.length; // 3 on a MIG-enabled A100 with three instances
 * ```
 */
export interface SmiXmlGpu {
  /** The PCI bus id in the `id` attribute, e.g. `00000000:07:00.0`. */
  readonly pciBusId: string;
  readonly productName: string;
  readonly uuid: string;
  readonly minorNumber: number | undefined;
  readonly migMode: string | undefined;
  readonly memoryTotalMb: number | undefined;
  readonly memoryUsedMb: number | undefined;
  readonly migDevices: readonly SmiMigDevice[];
  readonly processes: readonly SmiXmlProcess[];
}

/**
 * The parts of `nvidia-smi -q -x` the bridge reads.
 *
 * @example
 * ```ts
 * const log = parseSmiXml(stdout);
 * log.driverVersion; // "535.129.03"
 * ```
 */
export interface SmiXmlLog {
  readonly driverVersion: string | undefined;
  readonly cudaVersion: string | undefined;
  readonly attachedGpus: number | undefined;
  readonly gpus: readonly SmiXmlGpu[];
}

/**
 * Parses `nvidia-smi -q -x`. Throws {@link SmiFormatError} when the text is
 * not an `nvidia_smi_log` document.
 *
 * @example
 * ```ts
 * const { gpus } = parseSmiXml(await readFile("smi.xml", "utf8"));
 * ```
 */
export function parseSmiXml(text: string): SmiXmlLog {
  const root = parseXml(text);
  if (root.name !== "nvidia_smi_log") {
    throw new SmiFormatError(`nvidia-smi -q -x: expected an <nvidia_smi_log> document, got <${root.name}>`);
  }
  const gpus = children(root, "gpu").map((g): SmiXmlGpu => {
    const fb = child(g, "fb_memory_usage");
    const migDevices = children(child(g, "mig_devices"), "mig_device").map((m): SmiMigDevice => {
      const mfb = child(m, "fb_memory_usage");
      return {
        index: integer(textOf(m, "index")) ?? 0,
        gpuInstanceId: integer(textOf(m, "gpu_instance_id")) ?? 0,
        computeInstanceId: integer(textOf(m, "compute_instance_id")) ?? 0,
        uuid: value(textOf(m, "uuid")),
        smCount: integer(textOf(child(child(m, "device_attributes"), "shared"), "multiprocessor_count")),
        memoryTotalMb: integer(textOf(mfb, "total")),
        memoryUsedMb: integer(textOf(mfb, "used")),
      };
    });
    const processes = children(child(g, "processes"), "process_info").flatMap((p): SmiXmlProcess[] => {
      const pid = integer(textOf(p, "pid"));
      if (pid === undefined) return [];
      return [
        {
          pid,
          type: textOf(p, "type") ?? "",
          name: textOf(p, "process_name") ?? "",
          usedMb: integer(textOf(p, "used_memory")),
          gpuInstanceId: integer(textOf(p, "gpu_instance_id")),
          computeInstanceId: integer(textOf(p, "compute_instance_id")),
        },
      ];
    });
    return {
      pciBusId: g.attrs.id ?? "",
      productName: value(textOf(g, "product_name")) ?? "unknown GPU",
      uuid: textOf(g, "uuid") ?? "",
      minorNumber: integer(textOf(g, "minor_number")),
      migMode: value(textOf(child(g, "mig_mode"), "current_mig")),
      memoryTotalMb: integer(textOf(fb, "total")),
      memoryUsedMb: integer(textOf(fb, "used")),
      migDevices,
      processes,
    };
  });
  return {
    driverVersion: value(textOf(root, "driver_version")),
    cudaVersion: value(textOf(root, "cuda_version")),
    attachedGpus: integer(textOf(root, "attached_gpus")),
    gpus,
  };
}

/**
 * The error for a failed nvidia-smi run, or `undefined` when it succeeded.
 * Recognises the "couldn't communicate with the NVIDIA driver" failure
 * (exit 9) and a missing NVML library (exit 12) and says what to do.
 *
 * @example
 * ```ts
 * const err = smiFailure({ exitCode: 9, stdout: "NVIDIA-SMI has failed because …", stderr: "" });
 * if (err) throw err; // GpuDriverError "io: nvidia-smi: the NVIDIA driver is not loaded …"
 * ```
 */
export function smiFailure(run: { exitCode: number | undefined; stdout: string; stderr: string }): GpuDriverError | undefined {
  const exitCode = run.exitCode ?? -1;
  if (exitCode === 0) return undefined;
  const output = `${run.stdout}\n${run.stderr}`.trim();
  let detail: string;
  if (/couldn't communicate with the NVIDIA driver/i.test(output) || exitCode === 9) {
    detail = "nvidia-smi: the NVIDIA driver is not loaded or not reachable: check `lsmod | grep nvidia` and the driver install, or run the bridge with --backend sim";
  } else if (/NVML Shared Library Not Found|libnvidia-ml/i.test(output) || exitCode === 12) {
    detail = "nvidia-smi: the NVML library (libnvidia-ml.so) is missing: reinstall the NVIDIA driver utilities";
  } else if (/GPU is lost|fallen off the bus/i.test(output) || exitCode === 15) {
    detail = "nvidia-smi: a GPU has fallen off the bus: reset it or reboot the host";
  } else {
    detail = `nvidia-smi exited ${exitCode}: ${firstLine(output) || "no output"}`;
  }
  return new GpuDriverError(detail, { exitCode, output });
}

const KNOWN_SM_COUNTS: ReadonlyArray<readonly [RegExp, number]> = [
  [/H100.*SXM|H100 80GB HBM3/i, 132],
  [/H100.*PCIe|H100 PCIe/i, 114],
  [/H200/i, 132],
  [/A100/i, 108],
  [/A30\b/i, 56],
  [/A40\b/i, 84],
  [/A10\b|A10G/i, 72],
  [/L40S?\b/i, 142],
  [/L4\b/i, 58],
  [/V100/i, 80],
  [/T4\b/i, 40],
  [/RTX 4090/i, 128],
  [/RTX 3090/i, 82],
  [/RTX 3060/i, 28],
];

/**
 * The SM count of a product by name; 0 when unknown. nvidia-smi has no
 * `--query-gpu` field for it, and `-q -x` reports it only for MIG devices.
 *
 * @example
 * ```ts
 * smCountOf("NVIDIA A100-SXM4-40GB"); // 108
 * ```
 */
export function smCountOf(productName: string): number {
  for (const [pattern, count] of KNOWN_SM_COUNTS) if (pattern.test(productName)) return count;
  return 0;
}

/**
 * Combines `--query-gpu` rows with `-q -x` into the GPUs the bridge serves:
 * one `GPU-<index>` per physical GPU, except that a GPU with MIG enabled is
 * served as its MIG devices, `GPU-<index>-MIG-<n>` (a MIG-enabled parent
 * cannot run CUDA work itself). Rows are matched to XML GPUs by UUID.
 *
 * @example
 * ```ts
 * const gpus = gpusFromSmi(parseGpuCsv(csv), parseSmiXml(xml));
 * gpus.map((g) => g.id); // ["GPU-0", "GPU-1-MIG-0", "GPU-1-MIG-1"]
 * ```
 */
export function gpusFromSmi(rows: readonly SmiGpuRow[], xml: SmiXmlLog | undefined): GpuInfo[] {
  const byUuid = new Map((xml?.gpus ?? []).map((g) => [g.uuid, g]));
  const out: GpuInfo[] = [];
  for (const row of [...rows].sort((a, b) => a.index - b.index)) {
    const x = byUuid.get(row.uuid);
    const driver = row.driverVersion !== "unknown" ? row.driverVersion : (xml?.driverVersion ?? "unknown");
    const migEnabled = (row.migMode ?? x?.migMode) === "Enabled";
    if (migEnabled && x !== undefined && x.migDevices.length > 0) {
      for (const m of x.migDevices) {
        const uuid = m.uuid ?? `MIG-${row.uuid}/${m.gpuInstanceId}/${m.computeInstanceId}`;
        out.push({
          id: `GPU-${row.index}-MIG-${m.index}`,
          name: `${row.name} MIG ${m.gpuInstanceId}/${m.computeInstanceId}`,
          uuid,
          memory_mb: m.memoryTotalMb ?? 0,
          sm_count: m.smCount ?? 0,
          driver_version: driver,
          index: row.index,
          visibleDevice: uuid,
          memory_used_mb: m.memoryUsedMb ?? 0,
        });
      }
      continue;
    }
    out.push({
      id: `GPU-${row.index}`,
      name: row.name,
      uuid: row.uuid,
      memory_mb: row.memoryTotalMb ?? x?.memoryTotalMb ?? 0,
      sm_count: smCountOf(row.name),
      driver_version: driver,
      index: row.index,
      visibleDevice: row.uuid,
      memory_used_mb: row.memoryUsedMb ?? x?.memoryUsedMb ?? 0,
    });
  }
  return out;
}

// ---------------------------------------------------------------------------

function csvLines(text: string): string[] {
  return text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== "");
}

/** nvidia-smi's CSV: fields separated by `, `, never quoted. */
function splitCsv(line: string): string[] {
  return line.split(",").map((f) => f.trim());
}

/** `undefined` for nvidia-smi's "no value" spellings. */
function value(text: string | undefined): string | undefined {
  if (text === undefined) return undefined;
  const t = text.trim();
  if (t === "" || /^\[?(N\/A|Not Supported|Unknown Error|Insufficient Permissions|Requested functionality has been deprecated)\]?$/i.test(t) || t === "None") return undefined;
  return t;
}

/** A whole number, tolerating a unit suffix (`40960 MiB`); `undefined` otherwise. */
function integer(text: string | undefined): number | undefined {
  const t = value(text);
  if (t === undefined) return undefined;
  const m = /^(\d+)(?:\s*[A-Za-z%]+)?$/.exec(t);
  return m ? Number(m[1]) : undefined;
}

function firstLine(text: string): string {
  return text.split("\n").find((l) => l.trim() !== "")?.trim() ?? "";
}

// --- a small XML reader: elements, attributes, text; enough for nvidia_smi_log

interface XmlElement {
  readonly name: string;
  readonly attrs: Record<string, string>;
  readonly children: XmlElement[];
  text: string;
}

function child(el: XmlElement | undefined, name: string): XmlElement | undefined {
  return el?.children.find((c) => c.name === name);
}

function children(el: XmlElement | undefined, name: string): XmlElement[] {
  return el === undefined ? [] : el.children.filter((c) => c.name === name);
}

function textOf(el: XmlElement | undefined, name: string): string | undefined {
  const c = child(el, name);
  return c === undefined ? undefined : c.text.trim();
}

const ENTITIES: Record<string, string> = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" };

function decodeEntities(s: string): string {
  return s.replace(/&(#x[0-9a-f]+|#\d+|[a-z]+);/gi, (whole, e: string) => {
    if (e.startsWith("#x") || e.startsWith("#X")) return String.fromCodePoint(parseInt(e.slice(2), 16));
    if (e.startsWith("#")) return String.fromCodePoint(parseInt(e.slice(1), 10));
    return ENTITIES[e] ?? whole;
  });
}

/** Parses one XML document into its root element; throws SmiFormatError on malformed input. */
function parseXml(text: string): XmlElement {
  const stack: XmlElement[] = [];
  let root: XmlElement | undefined;
  const token = /<!--[\s\S]*?-->|<\?[\s\S]*?\?>|<!DOCTYPE[^>]*>|<!\[CDATA\[([\s\S]*?)\]\]>|<\/\s*([\w:.-]+)\s*>|<([\w:.-]+)((?:\s+[\w:.-]+\s*=\s*(?:"[^"]*"|'[^']*'))*)\s*(\/?)>|([^<]+)/g;
  let m: RegExpExecArray | null;
  let consumed = 0;
  while ((m = token.exec(text)) !== null) {
    if (m.index !== consumed) break;
    consumed = token.lastIndex;
    const [whole, cdata, close, open, attrText, selfClose, chars] = m;
    const top = stack[stack.length - 1];
    if (cdata !== undefined) {
      if (top) top.text += cdata;
    } else if (chars !== undefined) {
      if (top) top.text += decodeEntities(chars);
    } else if (close !== undefined) {
      const el = stack.pop();
      if (el === undefined || el.name !== close) throw new SmiFormatError(`nvidia-smi -q -x: unexpected </${close}>`);
      if (stack.length === 0) root = el;
    } else if (open !== undefined) {
      const attrs: Record<string, string> = {};
      for (const a of (attrText ?? "").matchAll(/([\w:.-]+)\s*=\s*(?:"([^"]*)"|'([^']*)')/g)) {
        attrs[a[1]!] = decodeEntities(a[2] ?? a[3] ?? "");
      }
      const el: XmlElement = { name: open, attrs, children: [], text: "" };
      if (top) top.children.push(el);
      else if (root !== undefined) throw new SmiFormatError("nvidia-smi -q -x: more than one root element");
      if (selfClose === "/") {
        if (!top) root = el;
      } else {
        stack.push(el);
      }
    } else if (whole.startsWith("<") && !whole.startsWith("<!") && !whole.startsWith("<?")) {
      break;
    }
  }
  if (consumed !== text.length || stack.length > 0 || root === undefined) {
    throw new SmiFormatError(`nvidia-smi -q -x: malformed XML near byte ${consumed}`);
  }
  return root;
}
