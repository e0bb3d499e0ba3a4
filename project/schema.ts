/**
 * A checker for the small subset of JSON Schema (2020-12) that the shipped
 * `schemas/cohesix.config.schema.json` uses: `type` (object, array, string,
 * integer, boolean), `properties`, `required`, `additionalProperties: false`,
 * `items`, `enum`, `pattern`, `minLength`, `minimum`, `maximum`, plus
 * `errorMessage` (as in ajv-errors) for a friendlier line. Annotations
 * (`description`, `default`, `title`, `$id`, `$schema`) are ignored; any
 * other keyword is refused when the schema is read, so the schema can never
 * say something this checker silently skips.
 *
 * The first problem found is thrown as `invalid: <file>: <path>: <what>`,
 * e.g. `invalid: cohesix.config.json: workers[1].budget.ticks: must be a
 * positive integer`.
 * @module
 */
import { InvalidError } from "../nine-door/index.ts";

/** A JSON Schema node of the supported subset. */
export interface SchemaNode {
  readonly type?: "object" | "array" | "string" | "integer" | "boolean";
  readonly properties?: Readonly<Record<string, SchemaNode>>;
  readonly required?: readonly string[];
  readonly additionalProperties?: boolean;
  readonly items?: SchemaNode;
  readonly enum?: readonly (string | number | boolean)[];
  readonly pattern?: string;
  readonly minLength?: number;
  readonly minimum?: number;
  readonly maximum?: number;
  readonly errorMessage?: string;
}

const KEYWORDS = new Set([
  "type", "properties", "required", "additionalProperties", "items", "enum", "pattern", "minLength", "minimum", "maximum", "errorMessage",
  "description", "default", "title", "$id", "$schema",
]);
const TYPES = new Set(["object", "array", "string", "integer", "boolean"]);

/**
 * Checks that `schema` uses only the supported keywords (recursively) and
 * returns it typed. Throws `invalid:` naming the schema path otherwise.
 *
 * @example
 * ```ts
 * const schema = readSchema(JSON.parse(readFileSync("schemas/cohesix.config.schema.json", "utf8")));
 * ```
 */
export function readSchema(value: unknown, at = "#"): SchemaNode {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new InvalidError(`schema ${at}: must be an object`);
  const node = value as Record<string, unknown>;
  for (const key of Object.keys(node)) {
    if (!KEYWORDS.has(key)) throw new InvalidError(`schema ${at}: keyword ${JSON.stringify(key)} is not supported by the config checker`);
  }
  if (node.type !== undefined && !TYPES.has(node.type as string)) throw new InvalidError(`schema ${at}/type: ${JSON.stringify(node.type)} is not supported`);
  if (node.properties !== undefined) {
    for (const [k, v] of Object.entries(node.properties as Record<string, unknown>)) readSchema(v, `${at}/properties/${k}`);
  }
  if (node.items !== undefined) readSchema(node.items, `${at}/items`);
  if (node.pattern !== undefined) new RegExp(node.pattern as string, "u");
  return node as SchemaNode;
}

/**
 * Validates `value` against `schema`; throws the first problem as
 * `invalid: <file>: <path>: <what>`.
 *
 * @example
 * ```ts
 * validate({ workers: [{ name: "Cam" }] }, schema, "cohesix.config.json");
 * // throws "invalid: cohesix.config.json: workers[0].name: must be a lowercase name …"
 * ```
 */
export function validate(value: unknown, schema: SchemaNode, file: string): void {
  const problem = check(value, schema, "");
  if (problem) throw new InvalidError(`${file}: ${problem.path || "(top level)"}: ${problem.what}`);
}

interface Problem {
  readonly path: string;
  readonly what: string;
}

const child = (path: string, key: string): string => (path ? `${path}.${key}` : key);

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") return "an object";
  return JSON.stringify(value);
}

function check(value: unknown, s: SchemaNode, path: string): Problem | undefined {
  // errorMessage replaces the generated line of a leaf (string, integer, boolean, enum).
  const fail = (what: string): Problem => ({ path, what: s.errorMessage ?? what });
  switch (s.type) {
    case "object": {
      if (typeof value !== "object" || value === null || Array.isArray(value)) return { path, what: `must be an object, got ${describe(value)}` };
      const obj = value as Record<string, unknown>;
      const known = Object.keys(s.properties ?? {});
      if (s.additionalProperties === false) {
        for (const key of Object.keys(obj)) {
          if (!known.includes(key)) return { path: child(path, key), what: `unknown field (known: ${[...known].sort().join(", ")})` };
        }
      }
      for (const key of s.required ?? []) {
        if (!(key in obj)) return { path: child(path, key), what: "is required" };
      }
      for (const key of known) {
        if (key in obj) {
          const p = check(obj[key], s.properties![key]!, child(path, key));
          if (p) return p;
        }
      }
      return undefined;
    }
    case "array": {
      if (!Array.isArray(value)) return { path, what: `must be an array, got ${describe(value)}` };
      if (s.items) {
        for (let i = 0; i < value.length; i++) {
          const p = check(value[i], s.items, `${path}[${i}]`);
          if (p) return p;
        }
      }
      return undefined;
    }
    case "string":
      if (typeof value !== "string") return fail(`must be a string, got ${describe(value)}`);
      if (s.minLength !== undefined && value.length < s.minLength) return fail(s.minLength === 1 ? "must not be empty" : `must be at least ${s.minLength} characters`);
      if (s.pattern !== undefined && !new RegExp(s.pattern, "u").test(value)) return fail(`must match /${s.pattern}/, got ${describe(value)}`);
      break;
    case "integer": {
      if (typeof value !== "number" || !Number.isSafeInteger(value) || (s.minimum !== undefined && value < s.minimum) || (s.maximum !== undefined && value > s.maximum)) {
        if (s.minimum === 1 && s.maximum === undefined) return fail(`must be a positive integer, got ${describe(value)}`);
        if (s.minimum === 0 && s.maximum === undefined) return fail(`must be a non-negative integer, got ${describe(value)}`);
        return fail(`must be an integer from ${s.minimum ?? "-∞"} to ${s.maximum ?? "∞"}, got ${describe(value)}`);
      }
      break;
    }
    case "boolean":
      if (typeof value !== "boolean") return fail(`must be true or false, got ${describe(value)}`);
      break;
  }
  if (s.enum !== undefined && !s.enum.includes(value as string | number | boolean)) {
    return fail(`must be one of ${s.enum.map((e) => JSON.stringify(e)).join(", ")}, got ${describe(value)}`);
  }
  return undefined;
}
