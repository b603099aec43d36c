// Strict schema check of Kubernetes objects against the API types of the npm package
// kubernetes-types (generated from the Kubernetes OpenAPI definitions, one package version per
// Kubernetes minor), by the TypeScript compiler: each object becomes an object literal assigned
// to a constant of its kind's type, e.g. `const o0: StatefulSet = {...}`. TypeScript then
// rejects, at any depth, a field the type does not have (excess property check), a value of the
// wrong type, a missing required field, and a wrong apiVersion or kind (literal types).
// What it cannot see: integer vs fractional numbers (both are `number`), the allowed values of
// enum-like strings, string formats (quantities, durations), and server-side rules.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import ts from "typescript";

const here = path.dirname(fileURLToPath(import.meta.url));
const typesDir = path.dirname(
  createRequire(import.meta.url).resolve("kubernetes-types/package.json"),
);
export const KUBERNETES_TYPES_VERSION = JSON.parse(
  fs.readFileSync(path.join(typesDir, "package.json"), "utf8"),
).version;

// API groups and the kubernetes-types directory of each.
const GROUPS = {
  "": "core",
  apps: "apps",
  batch: "batch",
  policy: "policy",
  autoscaling: "autoscaling",
  "networking.k8s.io": "networking",
  "rbac.authorization.k8s.io": "rbac",
  "storage.k8s.io": "storage",
  "scheduling.k8s.io": "scheduling",
  "coordination.k8s.io": "coordination",
  "discovery.k8s.io": "discovery",
};

// The module and type name for an object, or an error message.
function typeOf(obj) {
  const { apiVersion, kind } = obj;
  if (typeof apiVersion !== "string" || typeof kind !== "string") {
    return { error: "apiVersion and kind must be strings" };
  }
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  const dir = GROUPS[group];
  const declarations = dir && path.join(typesDir, dir, `${version}.d.ts`);
  if (!dir || !fs.existsSync(declarations)) {
    return {
      error: `no API types for apiVersion ${apiVersion} (kubernetes-types ${KUBERNETES_TYPES_VERSION})`,
    };
  }
  // A top-level kind declares its own literal `kind`; nested types (PodSpec, ...) do not.
  const text = fs.readFileSync(declarations, "utf8");
  const start = /^[A-Z][A-Za-z0-9]*$/.test(kind)
    ? text.indexOf(`export interface ${kind} {\n`)
    : -1;
  const body = start < 0 ? "" : text.slice(start, text.indexOf("\n}", start));
  if (kind.endsWith("List") || !body.includes(`    kind?: "${kind}";`)) {
    return { error: `apiVersion ${apiVersion} has no kind ${kind}` };
  }
  return { module: `kubernetes-types/${dir}/${version}`, name: kind };
}

// The JSON path ("spec.containers[0].name") of the object-literal node at `pos`.
function jsonPathAt(root, pos) {
  const parts = [];
  let node = root;
  for (;;) {
    const next = node.getChildren().find((c) => c.getStart() <= pos && pos < c.getEnd());
    if (!next) break;
    if (ts.isPropertyAssignment(next)) {
      parts.push(JSON.parse(next.name.getText()));
    } else if (ts.isArrayLiteralExpression(node)) {
      const i = node.elements.findIndex((e) => e.getStart() <= pos && pos < e.getEnd());
      if (i >= 0 && next.kind === ts.SyntaxKind.SyntaxList) {
        parts.push(i);
      }
    }
    node = next;
  }
  let out = "";
  for (const p of parts) {
    out +=
      typeof p === "number"
        ? `[${p}]`
        : /^[A-Za-z_][A-Za-z0-9_]*$/.test(p)
          ? (out ? "." : "") + p
          : `[${JSON.stringify(p)}]`;
  }
  return out || "(the object)";
}

// Checks every object of every group in one compiler run. `groups`: [[object, ...], ...].
// Returns, per group, per object, a list of {path, message}.
export function checkSchemas(groups) {
  const results = groups.map((objects) => objects.map(() => []));
  const sources = new Map(); // file name -> {group, text, starts: [offset of object i]}
  groups.forEach((objects, g) => {
    const fileName = path.join(here, `__rendered_${g}__.ts`); // virtual, never written
    let text = "export {};\n";
    const starts = [];
    objects.forEach((obj, i) => {
      const t = typeOf(obj);
      if (t.error) {
        results[g][i].push({ path: "(the object)", message: t.error });
        starts.push(null);
        return;
      }
      text += `const o${i}: import(${JSON.stringify(t.module)}).${t.name} = `;
      starts.push(text.length);
      text += `${JSON.stringify(obj, null, 1)};\n`;
    });
    sources.set(fileName, { g, text, starts });
  });

  const options = {
    strict: true,
    noEmit: true,
    target: ts.ScriptTarget.ES2020,
    lib: ["lib.es2020.d.ts"],
    module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    types: [],
    skipLibCheck: true,
  };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile;
  const fileExists = host.fileExists;
  const readFile = host.readFile;
  host.getSourceFile = (f, lang, ...rest) =>
    sources.has(f)
      ? ts.createSourceFile(f, sources.get(f).text, lang, true)
      : getSourceFile(f, lang, ...rest);
  host.fileExists = (f) => sources.has(f) || fileExists(f);
  host.readFile = (f) => (sources.has(f) ? sources.get(f).text : readFile(f));
  const program = ts.createProgram([...sources.keys()], options, host);

  for (const d of ts.getPreEmitDiagnostics(program)) {
    const message = ts.flattenDiagnosticMessageText(d.messageText, " ");
    const source = d.file && sources.get(d.file.fileName);
    if (!source) throw new Error(`TypeScript: ${message}`); // a broken installation
    const i = source.starts.findLastIndex((s) => s !== null && s <= d.start);
    if (i < 0) throw new Error(`TypeScript, outside any object: ${message}`);
    const statement = d.file.statements.find(
      (s) => s.getStart() <= d.start && d.start < s.getEnd(),
    );
    const literal = statement.declarationList.declarations[0].initializer;
    results[source.g][i].push({ path: jsonPathAt(literal, d.start), message });
  }
  return results;
}
