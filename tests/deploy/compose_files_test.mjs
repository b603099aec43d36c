// deploy/docker-compose*.yml, offline: the standalone files pass deploy/k8s/validate/compose.mjs;
// the replicas file is what it says (three logpd on one volume and one PostgreSQL catalogue,
// each with its own --replica_id and loopback port, PostgreSQL published nowhere, the password
// file git-ignored); and copies with one defect each (a replica on SQLite, a shared
// --replica_id, a password in the URI or the file, a port on every interface, ...) fail with the
// expected messages only, none quoting a password. (scripts/container-test.sh runs the files.)
//
//   node tests/deploy/compose_files_test.mjs REPO_ROOT
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const repo = path.resolve(
  process.argv[2] ?? path.join(path.dirname(new URL(import.meta.url).pathname), "../.."),
);
const deploy = path.join(repo, "deploy");
const validate = path.join(deploy, "k8s/validate");
const { checkCompose, readCompose, readEntrypoint } = await import(
  path.join(validate, "compose.mjs")
);
const { readLogpdFlags, parsePostgresUri } = await import(path.join(validate, "consistency.mjs"));
const { default: YAML } = await import(path.join(validate, "node_modules/yaml/dist/index.js"));
const options = {
  flags: readLogpdFlags(path.join(repo, "server/main.cc")),
  entrypoint: readEntrypoint(path.join(repo, "Dockerfile")),
};

// Files compose runs on their own, and overrides added with a second -f (not checked alone).
const STANDALONE = ["docker-compose.yml", "docker-compose.replicas.yml"];
const OVERRIDES = ["docker-compose.tls.yml"];
const REPLICAS = "docker-compose.replicas.yml";

let passed = 0;
let failed = 0;
function check(name, ok, detail = "") {
  console.log(`${ok ? "ok  " : "FAIL"} ${name}`);
  if (!ok) {
    console.log(`     ${String(detail).split("\n").join("\n     ")}`);
    failed++;
  } else {
    passed++;
  }
}
const show = (problems) => problems.map((p) => `${p.service}: ${p.path}: ${p.message}`);
const problemsOf = (file) => {
  try {
    return show(checkCompose(readCompose(file), options));
  } catch (e) {
    return [`(file): ${e.message}`];
  }
};

// ---- the files as committed --------------------------------------------------------------

const present = fs
  .readdirSync(deploy)
  .filter((f) => /^docker-compose.*\.ya?ml$/.test(f))
  .sort();
check(
  `every deploy/docker-compose*.yml is checked (${STANDALONE.join(", ")}) or an override (${OVERRIDES.join(", ")})`,
  JSON.stringify(present) === JSON.stringify([...STANDALONE, ...OVERRIDES].sort()),
  present.join(", "),
);
for (const f of STANDALONE) {
  const problems = problemsOf(path.join(deploy, f));
  check(`${f} passes`, problems.length === 0, problems.join("\n"));
}

const { compose } = readCompose(path.join(deploy, REPLICAS));
const services = compose.services;
const command = (s) => Object.fromEntries(s.command.map((a) => a.slice(2).split(/=(.*)/s)));
const replicas = Object.keys(services).filter((n) => n.startsWith("logpd-"));
check(`${REPLICAS}: three replicas`, replicas.length === 3, replicas.join(", "));
const ids = new Set(replicas.map((n) => command(services[n]).replica_id));
check("each its own --replica_id", ids.size === 3 && !ids.has(undefined), [...ids].join(", "));
const catalogs = new Set(replicas.map((n) => command(services[n]).catalog));
const [catalog] = catalogs;
const uri = catalogs.size === 1 && parsePostgresUri(catalog);
check(
  "one --catalog, PostgreSQL on the service postgres, no password in it",
  uri && uri.hosts.length === 1 && uri.hosts[0].host === "postgres" && uri.password === undefined,
  [...catalogs].join(", "),
);
const volumes = new Set(replicas.flatMap((n) => services[n].volumes));
check(
  "one shared data volume at /data",
  volumes.size === 1 && [...volumes][0].endsWith(":/data"),
  [...volumes].join(", "),
);
const published = replicas.map((n) => services[n].ports.join(" "));
check(
  "each published on its own loopback port",
  new Set(published).size === 3 && published.every((p) => /^127\.0\.0\.1:\d+:50051$/.test(p)),
  published.join(", "),
);
check("PostgreSQL publishes no port", (services.postgres?.ports ?? []).length === 0);
const envFile = path.resolve(deploy, services.postgres.env_file[0]);
check(
  "the replicas and PostgreSQL read PGPASSWORD from one env file, deploy/secrets/postgres.env",
  envFile === path.join(deploy, "secrets/postgres.env") &&
    replicas.every(
      (n) =>
        services[n].env_file.length === 1 &&
        path.resolve(deploy, services[n].env_file[0]) === envFile,
    ),
  envFile,
);
let ignored = null;
try {
  execFileSync("git", ["-C", repo, "check-ignore", "-q", path.relative(repo, envFile)], {
    stdio: "ignore",
  });
  ignored = true;
} catch (e) {
  ignored = e.status === 1 ? false : null; // 128: not a git work tree (a tarball)
}
if (ignored === null) {
  console.log("note: not a git work tree: the env file's git-ignore is not checked");
} else {
  check("deploy/secrets/postgres.env is git-ignored", ignored);
}
const example = fs.readFileSync(path.join(deploy, "postgres.env.example"), "utf8");
check(
  "postgres.env.example: marked as an example, one PGPASSWORD= line",
  /EXAMPLE ONLY/.test(example) &&
    example.split("\n").filter((l) => l && !l.startsWith("#")).length === 1 &&
    /^PGPASSWORD=\S+$/m.test(example),
  example,
);

// ---- the defects -------------------------------------------------------------------------

const args = (s) => s.command;
const setArg = (s, flag, value) => {
  s.command = args(s).filter((a) => !a.startsWith(`--${flag}=`));
  if (value !== undefined) s.command.push(`--${flag}=${value}`);
};
const forReplicas = (fn) => (d) => replicas.forEach((n) => fn(d.services[n], n));
const CASES = [
  {
    name: "two logpd on one volume with SQLite (docker-compose.yml)",
    file: "docker-compose.yml",
    change: (d) => {
      d.services["logpd-b"] = { ...d.services.logpd, ports: ["127.0.0.1:50052:50051"] };
    },
    messages: [
      "logpd: command: shares volume:logp-data with logpd-b: several logpd on one data directory need --catalog=postgresql://... (SQLite serves one)",
      "logpd-b: command: shares volume:logp-data with logpd: several logpd",
      "logpd: command: a replica needs its own --replica_id",
      "logpd-b: command: a replica needs its own --replica_id",
    ],
  },
  {
    name: "a replica on SQLite",
    change: (d) => setArg(d.services["logpd-2"], "catalog"),
    messages: [
      "logpd-2: command: shares volume:logp-shared with logpd-1, logpd-3: several logpd on one data directory need --catalog=postgresql://...",
    ],
  },
  {
    name: "two replicas with one --replica_id",
    change: (d) => setArg(d.services["logpd-3"], "replica_id", "logpd-1"),
    messages: ["logpd-3: command: --replica_id=logpd-1 is logpd-1's too"],
  },
  {
    name: "a replica without --replica_id",
    change: (d) => setArg(d.services["logpd-2"], "replica_id"),
    messages: ["logpd-2: command: a replica needs its own --replica_id (stable across restarts)"],
  },
  {
    name: "a replica on another volume",
    change: (d) => {
      d.services["logpd-3"].volumes = ["other:/data"];
      d.volumes.other = null;
    },
    messages: [
      "logpd-1: volumes: logpd-1, logpd-2, logpd-3 share one --catalog but not one data directory",
    ],
  },
  {
    name: "a replica with the data directory on no volume",
    change: (d) => (d.services["logpd-2"].volumes = []),
    messages: [
      "logpd-2: volumes: nothing at --data_dir (/data): the data would go with the container",
      "logpd-1: volumes: logpd-1, logpd-2, logpd-3 share one --catalog but not one data directory",
    ],
  },
  {
    name: "PostgreSQL published on every interface",
    change: (d) => (d.services.postgres.ports = ["5432:5432"]),
    messages: ["postgres: ports[0]: publishes 5432 on every interface: 127.0.0.1 (or [::1]) only"],
  },
  {
    name: "a replica published on 0.0.0.0",
    change: (d) => (d.services["logpd-1"].ports = ["0.0.0.0:50051:50051"]),
    messages: ["logpd-1: ports[0]: publishes 50051 on 0.0.0.0: 127.0.0.1 (or [::1]) only"],
  },
  {
    name: "the host's network",
    change: (d) => (d.services.postgres.network_mode = "host"),
    messages: ["postgres: network_mode: host: every port would be public"],
  },
  {
    name: "a password in the catalogue URI",
    change: forReplicas((s) =>
      setArg(s, "catalog", "postgresql://logp:hunter2@postgres:5432/logp"),
    ),
    messages: ["command: --catalog holds a password: give it as PGPASSWORD from an env_file"],
    secret: "hunter2",
  },
  {
    name: "PGPASSWORD as a literal in the file",
    change: (d) => (d.services["logpd-1"].environment = { PGPASSWORD: "hunter2" }),
    messages: [
      "logpd-1: environment.PGPASSWORD: a literal in the compose file: an env_file (git-ignored) or ${VARIABLE}",
      "logpd-1: env_file: PGPASSWORD from environment, but postgres's from env_file:./secrets/postgres.env: one source for both",
    ],
    secret: "hunter2",
  },
  {
    name: "the replicas without the password",
    change: forReplicas((s) => delete s.env_file),
    messages: [
      "env_file: the catalogue's password: PGPASSWORD from an env_file (git-ignored)",
    ],
  },
  {
    name: "the catalogue's host no service of the file",
    change: forReplicas((s) => setArg(s, "catalog", "postgresql://logp@db:5432/logp")),
    messages: ["command: --catalog's host 'db' is no service of this file"],
  },
  {
    name: "PostgreSQL without a health check",
    change: (d) => delete d.services.postgres.healthcheck,
    messages: ["postgres: healthcheck: the catalogue's server needs a pg_isready health check"],
  },
  {
    name: "a replica that does not wait for PostgreSQL",
    change: (d) => delete d.services["logpd-2"].depends_on,
    messages: ["logpd-2: depends_on: postgres (condition: service_healthy): the catalogue first"],
  },
  {
    name: "a replica that waits for PostgreSQL's start only",
    change: (d) => (d.services["logpd-2"].depends_on = ["postgres"]),
    messages: ["logpd-2: depends_on.postgres.condition: service_healthy"],
  },
  {
    name: "a scaled replica",
    change: (d) => (d.services["logpd-1"].deploy = { replicas: 2 }),
    messages: [
      "logpd-1: deploy.replicas: 2 copies of one service would share its --replica_id and its published port: one service per replica",
    ],
  },
  {
    name: "a flag logpd does not have",
    change: (d) => d.services["logpd-1"].command.push("--replicaid=x"),
    messages: [
      "logpd-1: command: logpd's args[6]: --replicaid is not a logpd flag (server/main.cc)",
    ],
  },
  {
    name: "a stop grace shorter than logpd's shutdown",
    change: (d) => (d.services["logpd-3"].stop_grace_period = "5s"),
    messages: ["logpd-3: stop_grace_period: 5s: at least --shutdown_grace_seconds (10) + 10 s"],
  },
];

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "compose-files-"));
try {
  for (const c of CASES) {
    const file = path.join(tmp, c.file ?? REPLICAS);
    const doc = YAML.parse(fs.readFileSync(path.join(deploy, c.file ?? REPLICAS), "utf8"), {
      merge: true,
    });
    c.change(doc);
    fs.writeFileSync(file, YAML.stringify(doc));
    const got = problemsOf(file);
    const errors = [];
    for (const m of c.messages) {
      if (!got.some((p) => p.includes(m))) errors.push(`missing "${m}"`);
    }
    for (const p of got) {
      if (!c.messages.some((m) => p.includes(m))) errors.push(`unexpected "${p}"`);
    }
    if (c.secret && got.some((p) => p.includes(c.secret))) {
      errors.push("a message quotes the password");
    }
    check(`rejects ${c.name}`, errors.length === 0, errors.join("\n"));
  }
} finally {
  fs.rmSync(tmp, { recursive: true, force: true });
}
console.log(`${passed} passed, ${failed} failed`);
process.exitCode = failed === 0 ? 0 : 1;
