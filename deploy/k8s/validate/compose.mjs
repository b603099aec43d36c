#!/usr/bin/env node
// Checks logp's compose files offline, as consistency.mjs checks the Kubernetes objects: what
// `docker compose config` would accept is not the question, but whether the services fit logpd
// and each other. A file is read as compose reads it (YAML with anchors and merge keys,
// ${VAR:-default} interpolated with the defaults: what runs when nothing is set), then:
// - every published port is bound to loopback (127.0.0.1 or [::1]), and no service uses the
//   host's network;
// - logpd's arguments (the image's ENTRYPOINT from the Dockerfile, then `command`) are logpd
//   flags (server/main.cc), and stop_grace_period covers --shutdown_grace_seconds;
// - logpd services on one data volume (the one at --data_dir) are replicas: each has the same
//   postgresql:// --catalog and its own --replica_id, and no service is scaled (deploy.replicas:
//   copies of one service would share its --replica_id and its published port); one --catalog
//   has one data volume; a single logpd on its volume may keep SQLite;
// - a --catalog holds no password; its host is a service of the file with a pg_isready health
//   check, that the replica depends on (condition: service_healthy); PGPASSWORD reaches the
//   replicas and the server from the same place (an env_file, or ${VAR}), never as a literal.
//
//   node deploy/k8s/validate/compose.mjs [--flags-from=server/main.cc] [--dockerfile=Dockerfile]
//     FILE ...
// Exit status 0 when every file passes, 1 with one line per problem otherwise.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import YAML from "yaml";
import { parseArgs, parsePostgresUri, readLogpdFlags } from "./consistency.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
export const DEFAULT_FLAGS_FILE = path.resolve(here, "../../../server/main.cc");
export const DEFAULT_DOCKERFILE = path.resolve(here, "../../../Dockerfile");
const LOGPD = "/usr/local/bin/logpd";
const SHUTDOWN_SLACK_SECONDS = 10; // as consistency.mjs
const DEFAULT_SHUTDOWN_GRACE_SECONDS = 10;
const DEFAULT_STOP_GRACE_SECONDS = 10; // compose's
const TOP_LEVEL = new Set(["services", "volumes", "networks", "secrets", "configs", "name"]);

export class ComposeError extends Error {}

// The image's entrypoint: ["/usr/local/bin/logpd", "--data_dir=/data", ...].
export function readEntrypoint(dockerfile) {
  const text = fs.readFileSync(dockerfile, "utf8");
  const lines = [...text.matchAll(/^ENTRYPOINT\s+(\[.*\])\s*$/gm)];
  if (lines.length === 0) throw new Error(`${dockerfile}: no ENTRYPOINT [...] line`);
  return JSON.parse(lines[lines.length - 1][1]); // the last stage's
}

// ${VAR}, ${VAR:-default}, ${VAR-default}, $VAR and $$ as compose interpolates them, with the
// variables of `env`.
function interpolate(value, env, where) {
  if (typeof value === "string") {
    return value.replace(
      /\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?)([-?+])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)/g,
      (all, name, colon, op, word, bare) => {
        if (all === "$$") return "$";
        if (bare) return env[bare] ?? "";
        const set = colon ? Boolean(env[name]) : env[name] !== undefined;
        if (op === "-") return set ? env[name] : word;
        if (op === "+") return set ? word : "";
        if (op === "?" && !set) {
          throw new ComposeError(`${where}: \${${name}} is required: ${word}`);
        }
        return env[name] ?? "";
      },
    );
  }
  if (Array.isArray(value)) return value.map((v, i) => interpolate(v, env, `${where}[${i}]`));
  if (value && typeof value === "object") {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [k, interpolate(v, env, `${where}.${k}`)]),
    );
  }
  return value;
}

// The file as compose reads it, or a ComposeError. Also the raw text of each environment
// value before interpolation (a literal password is told from ${VAR} there).
export function readCompose(file, env = {}) {
  const text = fs.readFileSync(file, "utf8");
  const doc = YAML.parseDocument(text, { merge: true, prettyErrors: true });
  const problems = [...doc.errors, ...doc.warnings];
  if (problems.length > 0) {
    throw new ComposeError(`${file}: ${problems.map((e) => e.message).join("; ")}`);
  }
  const raw = doc.toJS();
  if (!raw || typeof raw !== "object" || Array.isArray(raw)) {
    throw new ComposeError(`${file}: not a mapping`);
  }
  return { raw, compose: interpolate(raw, env, "") };
}

function list(v) {
  if (v === undefined || v === null) return [];
  return Array.isArray(v) ? v : [v];
}

// {NAME: value} of a service's `environment` (a list of NAME=value or a mapping).
function environmentOf(service) {
  const e = service?.environment;
  if (Array.isArray(e)) {
    return Object.fromEntries(
      e.map((kv) => {
        const eq = String(kv).indexOf("=");
        return eq < 0 ? [String(kv), undefined] : [kv.slice(0, eq), kv.slice(eq + 1)];
      }),
    );
  }
  return e ?? {};
}

function seconds(duration) {
  if (duration === undefined) return DEFAULT_STOP_GRACE_SECONDS;
  const m = /^(?:([0-9.]+)h)?(?:([0-9.]+)m(?!s))?(?:([0-9.]+)s)?(?:([0-9.]+)ms)?$/.exec(
    String(duration),
  );
  if (!m || String(duration) === "") return NaN;
  return (
    Number(m[1] ?? 0) * 3600 + Number(m[2] ?? 0) * 60 + Number(m[3] ?? 0) + Number(m[4] ?? 0) / 1e3
  );
}

// Published ports: [{where, hostIp, published, target}] from the short and long syntax.
function portsOf(service) {
  return list(service.ports).map((p, i) => {
    const where = `ports[${i}]`;
    if (typeof p === "object") {
      return { where, hostIp: p.host_ip ?? "", published: p.published, target: p.target };
    }
    const s = String(p);
    const m = /^(?:(?:(\[[^\]]*\]|[^:[\]]*):)?([0-9-]*):)?([0-9-]+)(?:\/\w+)?$/.exec(s);
    if (!m) return { where, hostIp: "?", published: s, target: s };
    return { where, hostIp: m[1] ?? "", published: m[2], target: m[3] };
  });
}

function isLoopback(ip) {
  return /^(127\.[0-9.]+|\[?::1\]?|localhost)$/.test(ip);
}

// The volume at `target` of a service: {kind: "volume" | "bind", source} or undefined.
function mountAt(service, target) {
  for (const v of list(service.volumes)) {
    if (typeof v === "object") {
      if (v.target === target) return { kind: v.type ?? "volume", source: v.source };
      continue;
    }
    const [source, dest] = String(v).split(":");
    if (dest === target) {
      return { kind: /^[./~]/.test(source) ? "bind" : "volume", source };
    }
  }
  return undefined;
}

// A service of the logp image, or built from the repository's Dockerfile.
function isLogpdService(s) {
  const image = String(s.image ?? "").split("@")[0];
  const build = typeof s.build === "object" ? s.build : { context: s.build };
  return (
    /(^|\/)logp(:[^/]*)?$/.test(image) ||
    (build.context === ".." && (build.dockerfile ?? "Dockerfile") === "Dockerfile")
  );
}

// Where a service's PGPASSWORD comes from: "env_file:PATH,...", "environment:RAW" or undefined.
function passwordSource(raw, service) {
  const env = environmentOf(raw);
  if (Object.hasOwn(env, "PGPASSWORD")) return `environment:${env.PGPASSWORD}`;
  const files = list(service.env_file).map((f) => (typeof f === "object" ? f.path : f));
  return files.length > 0 ? `env_file:${files.join(",")}` : undefined;
}

// All problems of one compose file: [{service, path, message}].
export function checkCompose({ raw, compose }, { flags, entrypoint }) {
  const problems = [];
  const at = (service) => (where, message) => problems.push({ service, path: where, message });
  for (const key of Object.keys(compose)) {
    if (!TOP_LEVEL.has(key) && !key.startsWith("x-")) at("(file)")(key, "not a compose field");
  }
  const services = compose.services ?? {};
  const rawServices = raw.services ?? {};
  const declaredVolumes = new Set(Object.keys(compose.volumes ?? {}));
  if (entrypoint[0] !== LOGPD) throw new Error(`the Dockerfile's ENTRYPOINT is not ${LOGPD}`);

  const logpd = new Map(); // name -> {args, data, catalog}
  for (const [name, s] of Object.entries(services)) {
    const report = at(name);
    if (s.network_mode === "host") report("network_mode", "host: every port would be public");
    for (const p of portsOf(s)) {
      if (!isLoopback(p.hostIp)) {
        report(
          p.where,
          `publishes ${p.published || p.target} on ${p.hostIp || "every interface"}: ` +
            "127.0.0.1 (or [::1]) only",
        );
      }
    }
    for (const [variable, value] of Object.entries(environmentOf(rawServices[name]))) {
      if (/PASSWORD|SECRET|TOKEN/i.test(variable) && value && !/\$\{?[A-Za-z_]/.test(value)) {
        report(
          `environment.${variable}`,
          "a literal in the compose file: an env_file (git-ignored) or ${VARIABLE}",
        );
      }
    }
    if (!isLogpdService(s)) continue;

    const words = [
      ...(s.entrypoint !== undefined ? list(s.entrypoint) : entrypoint),
      ...(typeof s.command === "string" ? s.command.split(/\s+/).filter(Boolean) : list(s.command)),
    ].map(String);
    if (words[0] !== LOGPD) {
      report("entrypoint", `runs ${words[0]}, not ${LOGPD}`);
      continue;
    }
    // (Problems name the argument by its place in logpd's argv: the entrypoint's, then these.)
    const args = parseArgs(words.slice(1), flags, (where, message) =>
      report("command", `logpd's ${where}: ${message}`),
    );
    const dataDir = args.get("data_dir");
    const data = dataDir && mountAt(s, dataDir);
    if (!data) {
      report("volumes", `nothing at --data_dir (${dataDir}): the data would go with the container`);
    } else if (data.kind === "volume" && !declaredVolumes.has(data.source)) {
      report("volumes", `volume ${data.source} is not declared under the top-level volumes`);
    }
    const grace = Number(args.get("shutdown_grace_seconds") ?? DEFAULT_SHUTDOWN_GRACE_SECONDS);
    const stop = seconds(s.stop_grace_period);
    if (!(stop >= grace + SHUTDOWN_SLACK_SECONDS)) {
      report(
        "stop_grace_period",
        `${s.stop_grace_period ?? "10s (the default)"}: at least --shutdown_grace_seconds ` +
          `(${grace}) + ${SHUTDOWN_SLACK_SECONDS} s`,
      );
    }
    const scale = s.deploy?.replicas ?? s.scale ?? 1;
    if (scale !== 1) {
      report(
        s.deploy?.replicas !== undefined ? "deploy.replicas" : "scale",
        `${scale} copies of one service would share its --replica_id and its published port: ` +
          "one service per replica",
      );
    }
    logpd.set(name, {
      args,
      data: data && `${data.kind}:${data.source}`,
      catalog: args.get("catalog") ?? "",
    });
  }

  // Replicas: logpd services on one data volume.
  const byData = new Map();
  for (const [name, l] of logpd) {
    if (l.data) byData.set(l.data, [...(byData.get(l.data) ?? []), name]);
  }
  for (const [data, names] of byData) {
    if (names.length < 2) continue;
    const [first] = names;
    const ids = new Map();
    for (const name of names) {
      const { args, catalog } = logpd.get(name);
      const report = at(name);
      if (!/^postgres(ql)?:\/\//.test(catalog)) {
        report(
          "command",
          `shares ${data} with ${names.filter((n) => n !== name).join(", ")}: several logpd on ` +
            "one data directory need --catalog=postgresql://... (SQLite serves one)",
        );
      } else if (catalog !== logpd.get(first).catalog && name !== first) {
        report("command", `another --catalog than ${first}'s, on the same data directory`);
      }
      const id = args.get("replica_id");
      if (id === undefined) {
        report("command", "a replica needs its own --replica_id (stable across restarts)");
      } else if (ids.has(id)) {
        report("command", `--replica_id=${id} is ${ids.get(id)}'s too`);
      } else {
        ids.set(id, name);
      }
    }
  }

  // One catalogue, one data directory; the catalogue's server.
  const byCatalog = new Map();
  for (const [name, l] of logpd) {
    if (/^postgres(ql)?:\/\//.test(l.catalog)) {
      byCatalog.set(l.catalog, [...(byCatalog.get(l.catalog) ?? []), name]);
    }
  }
  for (const [catalog, names] of byCatalog) {
    const volumes = new Set(names.map((n) => logpd.get(n).data));
    if (volumes.size > 1) {
      at(names[0])(
        "volumes",
        `${names.join(", ")} share one --catalog but not one data directory: each would miss ` +
          "the others' files, and remove those it does not know at start",
      );
    }
    const uri = parsePostgresUri(catalog);
    for (const name of names) {
      const report = at(name);
      if (!uri) {
        report("command", "--catalog is not a PostgreSQL URI (postgresql://USER@HOST:PORT/DB)");
        continue;
      }
      if (uri.password !== undefined) {
        report("command", "--catalog holds a password: give it as PGPASSWORD from an env_file");
      }
      const mine = passwordSource(rawServices[name], services[name]);
      if (mine === undefined) {
        report("env_file", "the catalogue's password: PGPASSWORD from an env_file (git-ignored)");
      }
      for (const { host } of uri.hosts) {
        const server = services[host];
        if (!server) {
          report("command", `--catalog's host '${host}' is no service of this file`);
          continue;
        }
        const test = list(server.healthcheck?.test).join(" ");
        if (!test.includes("pg_isready")) {
          at(host)("healthcheck", "the catalogue's server needs a pg_isready health check");
        }
        const deps = services[name].depends_on;
        const dep = Array.isArray(deps) ? (deps.includes(host) ? {} : undefined) : deps?.[host];
        if (dep === undefined) {
          report("depends_on", `${host} (condition: service_healthy): the catalogue first`);
        } else if (dep.condition !== "service_healthy") {
          report(`depends_on.${host}.condition`, "service_healthy: the catalogue first");
        }
        const theirs = passwordSource(rawServices[host], server);
        if (mine !== undefined && theirs !== mine) {
          // (Never the value: "environment" stands for what the file says there.)
          const shown = (source) => source?.replace(/^environment:.*/s, "environment") ?? "nowhere";
          report(
            "env_file",
            `PGPASSWORD from ${shown(mine)}, but ${host}'s from ${shown(theirs)}: ` +
              "one source for both",
          );
        }
      }
    }
  }
  // (A problem of the server is found once per replica.)
  const seen = new Set();
  return problems.filter((p) => {
    const key = JSON.stringify(p);
    return !seen.has(key) && seen.add(key);
  });
}

function main(argv) {
  let flagsFile = DEFAULT_FLAGS_FILE;
  let dockerfile = DEFAULT_DOCKERFILE;
  const files = [];
  for (const arg of argv) {
    if (arg.startsWith("--flags-from=")) flagsFile = arg.slice("--flags-from=".length);
    else if (arg.startsWith("--dockerfile=")) dockerfile = arg.slice("--dockerfile=".length);
    else if (arg.startsWith("-")) {
      console.error(
        "usage: compose.mjs [--flags-from=server/main.cc] [--dockerfile=Dockerfile] FILE ...",
      );
      return 2;
    } else files.push(arg);
  }
  const options = { flags: readLogpdFlags(flagsFile), entrypoint: readEntrypoint(dockerfile) };
  let failed = false;
  for (const file of files) {
    let problems;
    try {
      problems = checkCompose(readCompose(file), options);
    } catch (e) {
      if (!(e instanceof ComposeError)) throw e;
      problems = [{ service: "(file)", path: "", message: e.message }];
    }
    if (problems.length === 0) console.log(`ok   ${file}`);
    for (const p of problems) console.log(`FAIL ${file}: ${p.service}: ${p.path}: ${p.message}`);
    failed ||= problems.length > 0;
  }
  return failed ? 1 : 0;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = main(process.argv.slice(2));
}
