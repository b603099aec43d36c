// A small kustomize: renders a kustomization directory as `kubectl kustomize` does, for the
// features deploy/k8s uses (resources, components, JSON 6902 patches, labels, images,
// namespace), and refuses every other field and patch form, so that nothing it cannot render is
// skipped in silence. tests/deploy/k8s_manifests_test.mjs compares its output with kubectl's
// wherever a kubectl is installed.
import fs from "node:fs";
import path from "node:path";
import YAML from "yaml";

// An error in what a kustomization says (not a bug of this renderer).
export class RenderError extends Error {}

const KUSTOMIZATION = {
  apiVersion: "kustomize.config.k8s.io/v1beta1",
  kind: "Kustomization",
};
const COMPONENT = { apiVersion: "kustomize.config.k8s.io/v1alpha1", kind: "Component" };
const FIELDS = new Set([
  "apiVersion",
  "kind",
  "resources",
  "components",
  "patches",
  "labels",
  "images",
  "namespace",
]);

// The YAML documents of `file` as plain objects, empty documents left out. Duplicate keys and
// syntax errors are errors, as they are for kubectl.
export function readYamlDocuments(file) {
  const text = fs.readFileSync(file, "utf8");
  const docs = YAML.parseAllDocuments(text, { prettyErrors: true });
  const out = [];
  for (const doc of docs) {
    const problems = [...doc.errors, ...doc.warnings];
    if (problems.length > 0) {
      throw new RenderError(`${file}: ${problems.map((e) => e.message).join("; ")}`);
    }
    const value = doc.toJS({ maxAliasCount: 0 });
    if (value !== null && value !== undefined) out.push(value);
  }
  return out;
}

function isObject(v) {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

function expectKeys(where, obj, allowed) {
  if (!isObject(obj)) throw new RenderError(`${where}: expected a mapping`);
  for (const key of Object.keys(obj)) {
    if (!allowed.includes(key)) {
      throw new RenderError(
        `${where}: field '${key}' is not supported (known: ${allowed.join(", ")})`,
      );
    }
  }
}

function expectList(where, v) {
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw new RenderError(`${where}: expected a list`);
  return v;
}

function loadKustomization(dir, want, files) {
  const file = path.join(dir, "kustomization.yaml");
  for (const other of ["kustomization.yml", "Kustomization"]) {
    if (fs.existsSync(path.join(dir, other))) {
      throw new RenderError(`${dir}: name the file kustomization.yaml, not ${other}`);
    }
  }
  if (!fs.existsSync(file)) throw new RenderError(`${dir}: no kustomization.yaml`);
  files.add(path.resolve(file));
  const docs = readYamlDocuments(file);
  if (docs.length !== 1) throw new RenderError(`${file}: expected one YAML document`);
  const k = docs[0];
  if (!isObject(k)) throw new RenderError(`${file}: expected a mapping`);
  if (k.apiVersion !== want.apiVersion || k.kind !== want.kind) {
    throw new RenderError(
      `${file}: expected apiVersion ${want.apiVersion}, kind ${want.kind}; ` +
        `found ${k.apiVersion}, ${k.kind}`,
    );
  }
  for (const key of Object.keys(k)) {
    if (!FIELDS.has(key)) {
      throw new RenderError(
        `${file}: field '${key}' is not supported by this renderer (supported: ` +
          `${[...FIELDS].join(", ")}); extend deploy/k8s/validate/kustomize.mjs`,
      );
    }
  }
  return { file, k };
}

// The rendered objects of the kustomization in `dir`. `files` collects every file read.
export function render(dir, files = new Set()) {
  return build(path.resolve(dir), KUSTOMIZATION, [], files);
}

function build(dir, want, inherited, files) {
  const { file, k } = loadKustomization(dir, want, files);
  let objects = want === COMPONENT ? inherited : [];
  for (const [i, entry] of expectList(`${file}: resources`, k.resources).entries()) {
    if (typeof entry !== "string" || /^[a-z]+:\/\//.test(entry) || entry.includes("?ref=")) {
      throw new RenderError(`${file}: resources[${i}]: only local files and directories`);
    }
    const target = path.resolve(dir, entry);
    if (!fs.existsSync(target))
      throw new RenderError(`${file}: resources[${i}]: ${entry} not found`);
    if (fs.statSync(target).isDirectory()) {
      objects.push(...build(target, KUSTOMIZATION, [], files));
    } else {
      files.add(target);
      for (const doc of readYamlDocuments(target)) {
        if (!isObject(doc)) throw new RenderError(`${target}: a document that is not a mapping`);
        objects.push(doc);
      }
    }
  }
  for (const [i, entry] of expectList(`${file}: components`, k.components).entries()) {
    const target = path.resolve(dir, String(entry));
    if (!fs.existsSync(target) || !fs.statSync(target).isDirectory()) {
      throw new RenderError(`${file}: components[${i}]: ${entry} is not a directory`);
    }
    objects = build(target, COMPONENT, objects, files);
  }
  // kustomize's order of its built-in transformers.
  for (const [i, p] of expectList(`${file}: patches`, k.patches).entries()) {
    applyPatch(`${file}: patches[${i}]`, dir, p, objects, files);
  }
  if (k.namespace !== undefined) {
    if (typeof k.namespace !== "string") throw new RenderError(`${file}: namespace: a string`);
    for (const o of objects) (o.metadata ??= {}).namespace = k.namespace;
  }
  for (const [i, l] of expectList(`${file}: labels`, k.labels).entries()) {
    applyLabels(`${file}: labels[${i}]`, l, objects);
  }
  for (const [i, img] of expectList(`${file}: images`, k.images).entries()) {
    applyImage(`${file}: images[${i}]`, img, objects);
  }
  const ids = new Set();
  for (const o of objects) {
    const id = `${o.apiVersion}/${o.kind}/${o.metadata?.namespace ?? ""}/${o.metadata?.name}`;
    if (ids.has(id)) throw new RenderError(`${file}: ${o.kind} ${o.metadata?.name} defined twice`);
    ids.add(id);
  }
  return objects;
}

// ---- patches: JSON 6902 only -------------------------------------------------------------

function applyPatch(where, dir, p, objects, files) {
  expectKeys(where, p, ["path", "patch", "target"]);
  if ((p.path === undefined) === (p.patch === undefined)) {
    throw new RenderError(`${where}: exactly one of path and patch`);
  }
  let ops;
  if (p.path !== undefined) {
    const file = path.resolve(dir, p.path);
    if (!fs.existsSync(file)) throw new RenderError(`${where}: ${p.path} not found`);
    files.add(file);
    const docs = readYamlDocuments(file);
    if (docs.length !== 1) throw new RenderError(`${where}: ${p.path}: expected one document`);
    ops = docs[0];
  } else {
    ops = YAML.parse(p.patch);
  }
  if (!Array.isArray(ops)) {
    throw new RenderError(
      `${where}: a strategic-merge patch; this renderer applies JSON 6902 patches only ` +
        "(a list of {op, path, value})",
    );
  }
  expectKeys(`${where}: target`, p.target ?? {}, ["group", "version", "kind", "name"]);
  const t = p.target;
  if (!t || !t.kind || !t.name)
    throw new RenderError(`${where}: target needs at least kind and name`);
  const matches = objects.filter((o) => {
    const [group, version] = o.apiVersion.includes("/")
      ? o.apiVersion.split("/")
      : ["", o.apiVersion];
    return (
      o.kind === t.kind &&
      o.metadata?.name === t.name &&
      (t.group === undefined || t.group === group) &&
      (t.version === undefined || t.version === version)
    );
  });
  if (matches.length === 0) throw new RenderError(`${where}: the target matches no object`);
  for (const o of matches) {
    for (const [i, op] of ops.entries()) {
      try {
        applyOperation(o, op);
      } catch (e) {
        if (!(e instanceof RenderError)) throw e;
        throw new RenderError(`${where}: operation ${i} (${JSON.stringify(op)}): ${e.message}`);
      }
    }
  }
}

function pointer(p) {
  if (typeof p !== "string" || (p !== "" && !p.startsWith("/"))) {
    throw new RenderError(`bad JSON pointer ${JSON.stringify(p)}`);
  }
  return p === ""
    ? []
    : p
        .slice(1)
        .split("/")
        .map((s) => s.replaceAll("~1", "/").replaceAll("~0", "~"));
}

// The container of the last token of `tokens` in `doc`, and that token.
function parentOf(doc, tokens) {
  if (tokens.length === 0) throw new RenderError("the whole document cannot be patched");
  let node = doc;
  for (const token of tokens.slice(0, -1)) {
    node = child(node, token);
    if (node === undefined) throw new RenderError(`no ${tokens.join("/")}: '${token}' missing`);
  }
  return [node, tokens[tokens.length - 1]];
}

function child(node, token) {
  if (Array.isArray(node)) {
    if (!/^(0|[1-9][0-9]*)$/.test(token)) return undefined;
    return node[Number(token)];
  }
  if (isObject(node)) return Object.hasOwn(node, token) ? node[token] : undefined;
  return undefined;
}

function arrayIndex(arr, token, forAdd) {
  if (forAdd && token === "-") return arr.length;
  if (!/^(0|[1-9][0-9]*)$/.test(token)) throw new RenderError(`'${token}' is not an array index`);
  const i = Number(token);
  if (i > arr.length || (!forAdd && i === arr.length))
    throw new RenderError(`index ${i} out of range`);
  return i;
}

function deepEqual(a, b) {
  return JSON.stringify(canonical(a)) === JSON.stringify(canonical(b));
}

export function canonical(v) {
  if (Array.isArray(v)) return v.map(canonical);
  if (isObject(v)) {
    return Object.fromEntries(
      Object.keys(v)
        .sort()
        .map((k) => [k, canonical(v[k])]),
    );
  }
  return v;
}

function applyOperation(doc, op) {
  expectKeys("operation", op, ["op", "path", "value", "from"]);
  const tokens = pointer(op.path);
  const clone = () => structuredClone(op.value);
  if (op.op !== "remove" && !Object.hasOwn(op, "value")) throw new RenderError("no value");
  const [parent, last] = parentOf(doc, tokens);
  switch (op.op) {
    case "add":
      if (Array.isArray(parent)) parent.splice(arrayIndex(parent, last, true), 0, clone());
      else if (isObject(parent)) parent[last] = clone();
      else throw new RenderError("the parent is not an object or array");
      return;
    case "replace":
    case "remove":
    case "test": {
      if (child(parent, last) === undefined) throw new RenderError(`${op.path} does not exist`);
      if (op.op === "test") {
        if (!deepEqual(child(parent, last), op.value)) {
          throw new RenderError(
            `test failed: ${op.path} is ${JSON.stringify(child(parent, last))}`,
          );
        }
      } else if (Array.isArray(parent)) {
        const i = arrayIndex(parent, last, false);
        if (op.op === "remove") parent.splice(i, 1);
        else parent[i] = clone();
      } else if (op.op === "remove") {
        delete parent[last];
      } else {
        parent[last] = clone();
      }
      return;
    }
    default:
      throw new RenderError(`op '${op.op}' is not supported (add, remove, replace, test)`);
  }
}

// ---- labels ------------------------------------------------------------------------------

const WORKLOADS = new Set(["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"]);

function applyLabels(where, l, objects) {
  expectKeys(where, l, ["pairs", "includeSelectors", "includeTemplates"]);
  if (!isObject(l.pairs)) throw new RenderError(`${where}: pairs: a mapping`);
  for (const [key, value] of Object.entries(l.pairs)) {
    if (typeof value !== "string") throw new RenderError(`${where}: pairs.${key}: a string`);
  }
  const add = (holder, field) => {
    holder[field] = { ...(holder[field] ?? {}), ...l.pairs };
  };
  for (const o of objects) {
    add((o.metadata ??= {}), "labels");
    const templates = l.includeTemplates || l.includeSelectors;
    if (templates && WORKLOADS.has(o.kind) && o.spec?.template) {
      add((o.spec.template.metadata ??= {}), "labels");
    }
    if (templates && o.kind === "StatefulSet") {
      for (const claim of o.spec?.volumeClaimTemplates ?? [])
        add((claim.metadata ??= {}), "labels");
    }
    if (templates && o.kind === "CronJob") {
      throw new RenderError(`${where}: CronJob templates are not supported`);
    }
    if (l.includeSelectors) {
      if (o.kind === "Service" && o.spec) add(o.spec, "selector");
      if ((WORKLOADS.has(o.kind) || o.kind === "PodDisruptionBudget") && o.spec) {
        add((o.spec.selector ??= {}), "matchLabels");
      }
    }
  }
}

// ---- images ------------------------------------------------------------------------------

function applyImage(where, img, objects) {
  expectKeys(where, img, ["name", "newName", "newTag", "digest"]);
  if (typeof img.name !== "string") throw new RenderError(`${where}: name: a string`);
  for (const o of objects) {
    const pod = o.kind === "CronJob" ? o.spec?.jobTemplate?.spec?.template : o.spec?.template;
    for (const c of [...(pod?.spec?.containers ?? []), ...(pod?.spec?.initContainers ?? [])]) {
      if (typeof c.image !== "string") continue;
      const m = /^(.*?)(?::([^:/@]+))?(?:@(.+))?$/.exec(c.image);
      if (m[1] !== img.name) continue;
      let tag = m[2] ? `:${m[2]}` : "";
      if (m[3]) tag = `@${m[3]}`;
      if (img.newTag !== undefined) tag = `:${img.newTag}`;
      if (img.digest !== undefined) tag = `@${img.digest}`;
      c.image = (img.newName ?? img.name) + tag;
    }
  }
}
