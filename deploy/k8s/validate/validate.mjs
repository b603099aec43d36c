#!/usr/bin/env node
// Checks logp's Kubernetes manifests offline: renders every kustomization under a root
// directory (kustomize.mjs), checks each object strictly against the Kubernetes API types
// (schema.mjs) and the objects against each other and logpd's flags (consistency.mjs), and
// refuses YAML files that no kustomization uses (they would escape every check).
//
//   node deploy/k8s/validate/validate.mjs [--flags-from=server/main.cc] [ROOT=deploy/k8s]
//
// Exit status 0 when everything passes, 1 with one line per problem otherwise.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { RenderError, render } from "./kustomize.mjs";
import { KUBERNETES_TYPES_VERSION, checkSchemas } from "./schema.mjs";
import { checkConsistency, readLogpdFlags } from "./consistency.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
export const DEFAULT_ROOT = path.resolve(here, "..");
export const DEFAULT_FLAGS_FILE = path.resolve(here, "../../../server/main.cc");
export { KUBERNETES_TYPES_VERSION };

// Directories under `root` holding a kustomization.yaml, and every YAML file, skipping
// node_modules.
function scan(root) {
  const dirs = [];
  const yamls = [];
  const walk = (dir) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, entry.name);
      if (entry.isDirectory()) {
        if (entry.name !== "node_modules") walk(p);
      } else if (/\.ya?ml$/.test(entry.name)) {
        yamls.push(path.resolve(p));
        if (entry.name === "kustomization.yaml") dirs.push(dir);
      }
    }
  };
  walk(root);
  return { dirs: dirs.sort(), yamls: yamls.sort() };
}

function isComponent(dir) {
  return /^kind:\s*Component\s*$/m.test(
    fs.readFileSync(path.join(dir, "kustomization.yaml"), "utf8"),
  );
}

// Validates every kustomization (not the components: they are rendered by the kustomizations
// that use them) of every root, with one compiler run. Returns, per root, {root, results:
// [{dir, objects, problems: [string]}], problems: [string]}.
export function validateRoots(roots, { flagsFile = DEFAULT_FLAGS_FILE } = {}) {
  const flags = readLogpdFlags(flagsFile);
  const out = roots.map((root) => {
    const { dirs, yamls } = scan(root);
    const used = new Set();
    const results = dirs
      .filter((dir) => !isComponent(dir))
      .map((dir) => {
        const name = path.relative(root, dir) || ".";
        try {
          return { dir: name, objects: render(dir, used), problems: [] };
        } catch (e) {
          if (!(e instanceof RenderError)) throw e;
          return { dir: name, objects: [], problems: [`${name}: ${e.message}`] };
        }
      });
    const problems = [];
    if (results.length === 0) problems.push(`${root}: no kustomization`);
    // (Files read by a kustomization that failed to render are not known: its error first.)
    const rendered = results.every((r) => r.problems.length === 0);
    for (const file of rendered ? yamls : []) {
      if (!used.has(file)) {
        problems.push(
          `${path.relative(root, file)}: used by no kustomization (so checked by nothing)`,
        );
      }
    }
    return { root, results, problems };
  });

  const all = out.flatMap((r) => r.results);
  const schemaResults = checkSchemas(all.map((r) => r.objects));
  all.forEach((r, g) => {
    r.objects.forEach((o, i) => {
      for (const p of schemaResults[g][i]) {
        r.problems.push(`${r.dir}: ${o.kind}/${o.metadata?.name}: ${p.path}: ${p.message}`);
      }
    });
    for (const p of checkConsistency(r.objects, flags)) {
      r.problems.push(`${r.dir}: ${p.object}: ${p.path}: ${p.message}`);
    }
  });
  return out;
}

function main(argv) {
  let flagsFile = DEFAULT_FLAGS_FILE;
  const roots = [];
  for (const arg of argv) {
    if (arg.startsWith("--flags-from=")) flagsFile = arg.slice("--flags-from=".length);
    else if (arg.startsWith("-")) {
      console.error(`usage: validate.mjs [--flags-from=server/main.cc] [ROOT ...]`);
      return 2;
    } else roots.push(path.resolve(arg));
  }
  if (roots.length === 0) roots.push(DEFAULT_ROOT);
  let failed = false;
  for (const { root, results, problems } of validateRoots(roots, { flagsFile })) {
    for (const r of results) {
      if (r.problems.length === 0) {
        console.log(
          `ok   ${path.join(root, r.dir)}: ${r.objects.map((o) => `${o.kind}/${o.metadata?.name}`).join(", ")}`,
        );
      }
      for (const p of r.problems) console.log(`FAIL ${p}`);
      failed ||= r.problems.length > 0;
    }
    for (const p of problems) console.log(`FAIL ${p}`);
    failed ||= problems.length > 0;
  }
  console.log(`(Kubernetes API types: kubernetes-types ${KUBERNETES_TYPES_VERSION})`);
  return failed ? 1 : 0;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = main(process.argv.slice(2));
}
