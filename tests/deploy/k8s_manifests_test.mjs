// deploy/k8s, offline: every kustomization renders and passes the strict schema and consistency
// checks of deploy/k8s/validate; copies of the tree with one defect each (an unknown field, a
// wrong type, a missing field, a bad patch, a Service that selects nothing, probes on the mTLS
// port, a flag logpd does not have, replicas on SQLite or on a ReadWriteOnce claim, a password in
// the catalogue URI, ...) fail with the expected message and nothing else, and never quote a
// password; and, where a kubectl is installed, its `kubectl kustomize` renders what the
// validator renders.
//
//   node tests/deploy/k8s_manifests_test.mjs REPO_ROOT
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const repo = path.resolve(
  process.argv[2] ?? path.join(path.dirname(new URL(import.meta.url).pathname), "../.."),
);
const k8s = path.join(repo, "deploy/k8s");
const { validateRoots, KUBERNETES_TYPES_VERSION } = await import(
  path.join(k8s, "validate/validate.mjs")
);
const { readYamlDocuments, render, canonical } = await import(
  path.join(k8s, "validate/kustomize.mjs")
);
const flagsFile = path.join(repo, "server/main.cc");

// ---- the defects -------------------------------------------------------------------------

const STS = "base/statefulset.yaml";
const PATCH = "components/mtls/statefulset-patch.yaml";
const REP = "components/replicated/statefulset-patch.yaml";
const CLAIM = "components/replicated/claim.yaml";
const PDBP = "components/replicated/poddisruptionbudget-patch.yaml";
const PG = "components/postgres/statefulset.yaml";
const NP = "components/postgres/networkpolicy.yaml";
const isArg = (prefix) => (o) => String(o.value).startsWith(prefix);
const pgPassword = (ops) => patchOp(ops, (o) => o.value?.name === "PGPASSWORD").value;
const serverEnv = (d) => d[0].spec.template.spec.containers[0].env;
const container = (docs) => docs[0].spec.template.spec.containers[0];
const patchOp = (ops, predicate) => {
  const op = ops.find(predicate);
  if (!op) throw new Error("test bug: no such patch operation");
  return op;
};
// The kustomizations: one logpd (SQLite), and replicas (PostgreSQL); each plain and with mTLS.
const SINGLE = ["base", "overlays/tls"];
const REPLICAS = ["overlays/replicas", "overlays/replicas-tls"];
const TLS = ["overlays/tls", "overlays/replicas-tls"];
const ALL = [...SINGLE, ...REPLICAS].sort();
const each = (dirs, messages) => Object.fromEntries(dirs.map((d) => [d, messages]));

// Each case: what it does to a copy of deploy/k8s (edit(file, fn) rewrites a file's documents),
// and per kustomization the messages expected; every other kustomization must pass, and every
// problem reported must be one of those expected.
const CASES = [
  // Strict schema: unknown fields, wrong types, missing required fields, at any depth.
  {
    name: "unknown field in a probe",
    change: (edit) => edit(STS, (d) => (container(d).livenessProbe.grpcc = { port: 50051 })),
    expect: ALL,
    messages: [
      `StatefulSet/logpd: spec.template.spec.containers[0].livenessProbe.grpcc: Object literal may only specify known properties, and '"grpcc"' does not exist in type 'Probe'.`,
    ],
  },
  {
    name: "unknown field in metadata",
    change: (edit) =>
      edit("base/poddisruptionbudget.yaml", (d) => (d[0].metadata.lables = { a: "b" })),
    expect: ALL,
    messages: [
      `PodDisruptionBudget/logpd: metadata.lables: Object literal may only specify known properties, and '"lables"' does not exist in type 'ObjectMeta'.`,
    ],
  },
  {
    name: "unknown field at the top",
    change: (edit) => edit("base/service.yaml", (d) => (d[0].specs = {})),
    expect: ALL,
    messages: [
      `Service/logpd: specs: Object literal may only specify known properties, and '"specs"' does not exist in type 'Service'.`,
    ],
  },
  {
    name: "wrong type: replicas a string",
    change: (edit) => edit(STS, (d) => (d[0].spec.replicas = "one")),
    expect: SINGLE, // (components/replicated replaces it)
    messages: [
      "StatefulSet/logpd: spec.replicas: Type 'string' is not assignable to type 'number'.",
    ],
  },
  {
    name: "wrong type: a label value a number",
    change: (edit) => edit("base/service.yaml", (d) => (d[0].metadata.labels.version = 2)),
    expect: ALL,
    messages: [
      `Service/logpd: metadata.labels.version: Type 'number' is not assignable to type 'string'.`,
    ],
  },
  {
    name: "missing required field: a Service port's port",
    change: (edit) => edit("base/service.yaml", (d) => delete d[0].spec.ports[0].port),
    expect: ALL,
    messages: [
      "Service/logpd: spec.ports[0]: Property 'port' is missing in type",
      "but required in type 'ServicePort'.",
    ],
  },
  {
    name: "missing required field: the container's name",
    change: (edit) => edit(STS, (d) => delete container(d).name),
    // The overlay's patch tests the name first, so it fails to render instead.
    expect: {
      base: [
        "StatefulSet/logpd: spec.template.spec.containers[0]: Property 'name' is missing in type",
        "but required in type 'Container'.",
      ],
      ...each([...TLS, ...REPLICAS], ["/spec/template/spec/containers/0/name does not exist"]),
    },
  },
  {
    name: "unknown field inside the overlay's patch",
    change: (edit) =>
      edit(PATCH, ([ops]) => {
        const v = patchOp(ops, (o) => o.value?.secret && o.value.name === "tls").value;
        v.secret.secretname = v.secret.secretName;
        delete v.secret.secretName;
      }),
    expect: TLS,
    messages: [
      `StatefulSet/logpd: spec.template.spec.volumes[1].secret.secretname: Object literal may only specify known properties, and '"secretname"' does not exist in type 'SecretVolumeSource'.`,
    ],
  },
  {
    name: "an apiVersion without the kind",
    change: (edit) =>
      edit("base/poddisruptionbudget.yaml", (d) => (d[0].apiVersion = "policy/v1beta1")),
    // components/replicated's patch of the budget names policy/v1.
    expect: {
      ...each(SINGLE, [
        "PodDisruptionBudget/logpd: (the object): no API types for apiVersion policy/v1beta1",
      ]),
      ...each(REPLICAS, ["the target matches no object"]),
    },
  },
  {
    name: "a misspelt kind",
    change: (edit) => edit(STS, (d) => (d[0].kind = "Statefulset")),
    // Not a StatefulSet, the Services and the budget select nothing.
    expect: {
      base: [
        "Statefulset/logpd: (the object): apiVersion apps/v1 has no kind Statefulset",
        "selects 0 workloads' pods",
        "selects no workload's pods",
      ],
      ...each([...TLS, ...REPLICAS], ["the target matches no object"]),
    },
  },

  // Rendering: what the renderer cannot do exactly, it refuses.
  {
    name: "a patch path that does not exist",
    change: (edit) =>
      edit(
        PATCH,
        ([ops]) =>
          (patchOp(ops, (o) => o.path.endsWith("livenessProbe/grpc/port")).path =
            "/spec/template/spec/containers/0/livenessProbe/grpc/prt"),
      ),
    expect: each(TLS, ["livenessProbe/grpc/prt does not exist"]),
  },
  {
    name: "a kustomization field the renderer does not implement",
    change: (edit) => edit("base/kustomization.yaml", (d) => (d[0].commonLabels = { a: "b" })),
    expect: ALL,
    messages: ["field 'commonLabels' is not supported by this renderer"],
  },
  {
    name: "a YAML file no kustomization uses",
    change: (edit, dir) =>
      fs.writeFileSync(path.join(dir, "base/configmap.yaml"), "apiVersion: v1\nkind: ConfigMap\n"),
    expect: { "": ["base/configmap.yaml: used by no kustomization"] },
  },

  // Consistency between the objects, and with logpd.
  {
    name: "the Service selects other pods",
    change: (edit) =>
      edit("base/service.yaml", (d) => (d[0].spec.selector["app.kubernetes.io/name"] = "logp")),
    expect: ALL,
    messages: [
      "Service/logpd: spec.selector: selects 0 workloads' pods, not 1",
      "StatefulSet/logpd: spec.template.metadata.labels: no ClusterIP Service selects these pods",
    ],
  },
  {
    name: "the PodDisruptionBudget selects other pods",
    change: (edit) =>
      edit(
        "base/poddisruptionbudget.yaml",
        (d) => (d[0].spec.selector.matchLabels["app.kubernetes.io/instance"] = "other"),
      ),
    expect: ALL,
    messages: [
      "PodDisruptionBudget/logpd: spec.selector.matchLabels: selects no workload's pods",
      "StatefulSet/logpd: spec.template.metadata.labels: no PodDisruptionBudget selects these pods",
    ],
  },
  {
    name: "a PodDisruptionBudget that lets the one pod go",
    change: (edit) => edit("base/poddisruptionbudget.yaml", (d) => (d[0].spec.maxUnavailable = 1)),
    expect: SINGLE, // (what components/replicated sets)
    messages: [
      "PodDisruptionBudget/logpd: spec: one replica: the budget must allow no voluntary eviction",
    ],
  },
  {
    name: "a probe on a port the container does not have",
    change: (edit) => edit(STS, (d) => (container(d).livenessProbe.grpc.port = 50052)),
    expect: each(["base", "overlays/replicas"], [
      "livenessProbe: port 50052 is not a port of the container",
      "livenessProbe.grpc.port: 50052 is neither --listen's nor --health_listen's port",
    ]),
  },
  {
    name: "with mTLS, a probe left on the main port",
    change: (edit) =>
      edit(PATCH, ([ops]) =>
        ops.splice(
          ops.indexOf(patchOp(ops, (o) => o.path.endsWith("readinessProbe/grpc/port"))),
          1,
        ),
      ),
    expect: each(TLS, [
      "spec.template.spec.containers[0].readinessProbe.grpc.port: 50051: with TLS the probes must use --health_listen's port",
    ]),
  },
  {
    name: "a mount of a volume that does not exist",
    change: (edit) => edit(STS, (d) => (d[0].spec.template.spec.volumes[0].name = "scratch")),
    expect: ALL,
    messages: [
      "volumeMounts[1].name: 'tmp' is no volume or volumeClaimTemplate",
      "spec.template.spec.volumes: 'scratch' is mounted by no container",
      "a read-only root needs an emptyDir at /tmp",
    ],
  },
  {
    name: "runAsNonRoot off",
    change: (edit) =>
      edit(STS, (d) => (d[0].spec.template.spec.securityContext.runAsNonRoot = false)),
    expect: ALL,
    messages: ["spec.template.spec.securityContext.runAsNonRoot: must be true"],
  },
  {
    name: "a writable root file system",
    change: (edit) =>
      edit(STS, (d) => (container(d).securityContext.readOnlyRootFilesystem = false)),
    expect: ALL,
    messages: ["containers[0].securityContext.readOnlyRootFilesystem: must be true"],
  },
  {
    name: "capabilities kept",
    change: (edit) => edit(STS, (d) => delete container(d).securityContext.capabilities),
    expect: ALL,
    messages: ["containers[0].securityContext.capabilities.drop: must hold ALL"],
  },
  {
    name: "no TMPDIR",
    change: (edit) => edit(STS, (d) => delete container(d).env),
    expect: {
      ...each(SINGLE, [
        "containers[0].env: a read-only root needs an emptyDir at /tmp and TMPDIR on one",
      ]),
      // components/replicated adds to the list.
      ...each(REPLICAS, ["'env' missing"]),
    },
  },
  {
    name: "a flag logpd does not have, in the overlay",
    change: (edit) =>
      edit(
        PATCH,
        ([ops]) =>
          (patchOp(ops, (o) => String(o.value).startsWith("--tls_cert_file=")).value =
            "--tls_cert=/etc/logp/tls/tls.crt"),
      ),
    expect: each(TLS, [
      "args[5]: --tls_cert is not a logpd flag (server/main.cc)",
      "--tls_cert_file and --tls_key_file go together",
      "--tls_client_ca_file needs --tls_cert_file",
    ]),
  },
  {
    name: "a TLS file the Secret's items do not provide",
    change: (edit) =>
      edit(
        PATCH,
        ([ops]) =>
          (patchOp(ops, (o) => String(o.value).startsWith("--tls_key_file=")).value =
            "--tls_key_file=/etc/logp/tls/server.key"),
      ),
    expect: each(TLS, [
      "--tls_key_file=/etc/logp/tls/server.key: volume 'tls' has no item with path server.key",
    ]),
  },
  {
    name: "a grace period shorter than logpd's shutdown",
    change: (edit) =>
      edit(STS, (d) => (d[0].spec.template.spec.terminationGracePeriodSeconds = 25)),
    expect: ALL,
    messages: ["terminationGracePeriodSeconds: 25: at least --shutdown_grace_seconds (20) + 10"],
  },
  {
    name: "a thread per node core",
    change: (edit) =>
      edit(
        STS,
        (d) =>
          (container(d).args = container(d).args.map((a) =>
            a.startsWith("--compute_threads=") ? "--compute_threads=0" : a,
          )),
      ),
    expect: ALL,
    messages: ["--compute_threads (0) must be from 1 to the CPU limit"],
  },
  {
    name: "the image's entrypoint instead of a command",
    change: (edit) => edit(STS, (d) => delete container(d).command),
    expect: ALL,
    messages: ["spec.template.spec.containers: 0 containers run /usr/local/bin/logpd, not 1"],
  },
  {
    name: "the data directory off the claim",
    change: (edit) => edit(STS, (d) => (container(d).args[0] = "--data_dir=/tmp/data")),
    expect: ALL,
    messages: ["--data_dir (/tmp/data) must be the mountPath of a volumeClaimTemplate"],
  },

  // Several replicas: PostgreSQL and one ReadWriteMany claim, exactly; the catalogue's Service,
  // port, password and Secret.
  {
    name: "three replicas of the base (SQLite, a claim per pod)",
    change: (edit) => edit(STS, (d) => (d[0].spec.replicas = 3)),
    expect: SINGLE, // (the replicas overlays set 3 anyway)
    messages: [
      "StatefulSet/logpd: spec.replicas: 3 replicas need the shared PostgreSQL catalogue (--catalog=postgresql://...): the SQLite catalogue in --data_dir serves one logpd",
      "StatefulSet/logpd: spec.volumeClaimTemplates: 3 replicas: 'data' gives each pod a data directory of its own; the replicas must share one ReadWriteMany PersistentVolumeClaim",
      "PodDisruptionBudget/logpd: spec: 3 replicas of StatefulSet/logpd: maxUnavailable: 1",
      "3 replicas: --replica_id=$(POD_NAME), with POD_NAME the pod's metadata.name from the downward API (none given)",
    ],
  },
  {
    name: "replicas with the SQLite catalogue",
    change: (edit) =>
      edit(REP, ([ops]) => ops.splice(ops.indexOf(patchOp(ops, isArg("--catalog="))), 1)),
    expect: REPLICAS,
    messages: [
      "StatefulSet/logpd: spec.replicas: 3 replicas need the shared PostgreSQL catalogue",
    ],
  },
  {
    name: "replicas on a ReadWriteOnce claim",
    change: (edit) => edit(CLAIM, (d) => (d[0].spec.accessModes = ["ReadWriteOnce"])),
    expect: REPLICAS,
    messages: [
      "3 replicas: claim 'logpd-data' must be ReadWriteMany (pods on several nodes mount it at once), not ReadWriteOnce",
    ],
  },
  {
    name: "replicas with a claim each",
    change: (edit) =>
      edit(REP, ([ops]) => {
        for (const op of [
          patchOp(ops, (o) => o.op === "remove" && o.path === "/spec/volumeClaimTemplates"),
          patchOp(ops, (o) => o.value?.persistentVolumeClaim),
        ])
          ops.splice(ops.indexOf(op), 1);
      }),
    expect: REPLICAS,
    messages: [
      "spec.volumeClaimTemplates: 3 replicas: 'data' gives each pod a data directory of its own",
      "PersistentVolumeClaim/logpd-data: metadata.name: mounted by no workload",
    ],
  },
  {
    name: "a password in the catalogue URI",
    change: (edit) =>
      edit(
        REP,
        ([ops]) =>
          (patchOp(ops, isArg("--catalog=")).value =
            "--catalog=postgresql://logp:hunter2@postgres:5432/logp"),
      ),
    expect: REPLICAS,
    messages: ["--catalog holds a password (visible to anyone who may read the pod)"],
    secret: "hunter2",
  },
  {
    name: "a password in the catalogue URI's parameters",
    change: (edit) =>
      edit(
        REP,
        ([ops]) =>
          (patchOp(ops, isArg("--catalog=")).value =
            "--catalog=postgresql://logp@postgres:5432/logp?sslmode=prefer&password=hunter2"),
      ),
    expect: REPLICAS,
    messages: ["--catalog holds a password"],
    secret: "hunter2",
  },
  {
    name: "PGPASSWORD in plain text",
    change: (edit) =>
      edit(REP, ([ops]) => {
        const v = pgPassword(ops);
        delete v.valueFrom;
        v.value = "hunter2";
      }),
    expect: REPLICAS,
    messages: [
      "containers[0].env[2]: PGPASSWORD in plain text in the manifest: valueFrom.secretKeyRef (a Secret)",
    ],
    secret: "hunter2",
  },
  {
    name: "no password for the catalogue",
    change: (edit) =>
      edit(REP, ([ops]) => {
        const v = pgPassword(ops);
        ops.splice(
          ops.findIndex((o) => o.value === v),
          1,
        );
      }),
    expect: REPLICAS,
    messages: ["containers[0].env: the catalogue's password: PGPASSWORD from a Secret"],
  },
  {
    name: "a Secret reference without its key",
    change: (edit) =>
      edit(REP, ([ops]) => delete pgPassword(ops).valueFrom.secretKeyRef.key),
    expect: REPLICAS,
    messages: [
      "StatefulSet/logpd: spec.template.spec.containers[0].env[2].valueFrom.secretKeyRef: Property 'key' is missing",
      "but required in type 'SecretKeySelector'.",
      "PGPASSWORD is key 'undefined' of Secret 'logpd-postgres', but StatefulSet/postgres's password is key 'password' of Secret 'logpd-postgres'",
    ],
  },
  {
    name: "logpd and PostgreSQL on different Secret keys",
    change: (edit) =>
      edit(PG, (d) => (serverEnv(d)[0].valueFrom.secretKeyRef.key = "pass")),
    expect: REPLICAS,
    messages: [
      "PGPASSWORD is key 'password' of Secret 'logpd-postgres', but StatefulSet/postgres's password is key 'pass' of Secret 'logpd-postgres': one Secret key for both",
    ],
  },
  {
    name: "an optional Secret",
    change: (edit) =>
      edit(REP, ([ops]) => (pgPassword(ops).valueFrom.secretKeyRef.optional = true)),
    expect: REPLICAS,
    messages: [
      "env[2].valueFrom.secretKeyRef.optional: PGPASSWORD: a missing Secret must stop the pod",
    ],
  },
  {
    name: "the catalogue on a host that is no Service",
    change: (edit) =>
      edit(
        REP,
        ([ops]) =>
          (patchOp(ops, isArg("--catalog=")).value =
            "--catalog=postgresql://logp@postgresql:5432/logp"),
      ),
    expect: REPLICAS,
    messages: ["--catalog's host 'postgresql' is no Service of this kustomization"],
  },
  {
    name: "the catalogue in a namespace the kustomization does not set",
    change: (edit) =>
      edit(
        REP,
        ([ops]) =>
          (patchOp(ops, isArg("--catalog=")).value =
            "--catalog=postgresql://logp@postgres.logp.svc:5433/logp"),
      ),
    expect: REPLICAS,
    messages: [
      "--catalog's host postgres.logp.svc names namespace logp, which this kustomization does not set",
    ],
  },
  {
    name: "the catalogue on a port of no Service",
    change: (edit) =>
      edit(
        REP,
        ([ops]) =>
          (patchOp(ops, isArg("--catalog=")).value =
            "--catalog=postgresql://logp@postgres:5433/logp"),
      ),
    expect: REPLICAS,
    messages: ["--catalog's port 5433 is not a port of Service/postgres"],
  },
  {
    name: "one --replica_id for every replica",
    change: (edit) =>
      edit(REP, ([ops]) => (patchOp(ops, isArg("--replica_id=")).value = "--replica_id=logpd")),
    expect: REPLICAS,
    messages: [
      "3 replicas: --replica_id=$(POD_NAME), with POD_NAME the pod's metadata.name from the downward API ('logpd' would be every replica's)",
    ],
  },
  {
    name: "--replica_id from a variable the container does not have",
    change: (edit) =>
      edit(REP, ([ops]) => (patchOp(ops, isArg("--replica_id=")).value = "--replica_id=$(POD)")),
    expect: REPLICAS,
    messages: [
      "$(POD) is no env variable of the container (it would stay as it is)",
      "('$(POD)' would be every replica's)",
    ],
  },
  {
    name: "replicas under a budget that lets none go",
    change: (edit) => edit(PDBP, ([ops]) => (ops[0].value = 0)),
    expect: REPLICAS,
    messages: [
      "PodDisruptionBudget/logpd: spec: 3 replicas of StatefulSet/logpd: maxUnavailable: 1",
    ],
  },
  {
    name: "two PostgreSQL pods",
    change: (edit) => edit(PG, (d) => (d[0].spec.replicas = 2)),
    expect: REPLICAS,
    messages: [
      "StatefulSet/postgres: spec.replicas: the catalogue of StatefulSet/logpd: 2 PostgreSQL pods would be separate databases behind one Service: 1",
      "PodDisruptionBudget/postgres: spec: 2 replicas of StatefulSet/postgres: maxUnavailable: 1",
    ],
  },
  {
    name: "a NetworkPolicy that keeps logpd from PostgreSQL",
    change: (edit) =>
      edit(
        NP,
        (d) =>
          (d[0].spec.ingress[0].from[0].podSelector.matchLabels["app.kubernetes.io/instance"] =
            "other"),
      ),
    expect: REPLICAS,
    messages: [
      "NetworkPolicy/postgres: spec.ingress[0].from[0].podSelector: selects no workload's pods",
      "StatefulSet/logpd: spec.template.metadata.labels: the NetworkPolicies keep these pods from StatefulSet/postgres's port 5432 (the catalogue)",
    ],
  },
  {
    name: "a Secret with its value in the manifests",
    change: (edit, dir) => {
      fs.writeFileSync(
        path.join(dir, "components/postgres/secret.yaml"),
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: logpd-postgres\nstringData:\n  password: hunter2\n",
      );
      // (A text edit: the renderer tells a Component by its `kind:` line.)
      const k = path.join(dir, "components/postgres/kustomization.yaml");
      fs.writeFileSync(
        k,
        fs.readFileSync(k, "utf8").replace("resources:\n", "resources:\n  - secret.yaml\n"),
      );
    },
    expect: REPLICAS,
    messages: ["Secret/logpd-postgres: data: a Secret with values in the manifests"],
    secret: "hunter2",
  },
  {
    name: "PostgreSQL as root",
    change: (edit) => edit(PG, (d) => (d[0].spec.template.spec.securityContext.runAsUser = 0)),
    expect: REPLICAS,
    messages: [
      "StatefulSet/postgres: spec.template.spec.securityContext.runAsUser: must be the image's user, not root (0)",
    ],
  },
];

// ---- running them ------------------------------------------------------------------------

let passed = 0;
let failed = 0;
function check(name, ok, detail) {
  console.log(`${ok ? "ok  " : "FAIL"} ${name}`);
  if (!ok) {
    console.log(`     ${detail.split("\n").join("\n     ")}`);
    failed++;
  } else {
    passed++;
  }
}

const started = Date.now();
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "k8s-manifests-"));
try {
  const roots = [k8s];
  for (const [i, c] of CASES.entries()) {
    const dir = path.join(tmp, `case${i}`);
    fs.cpSync(k8s, dir, {
      recursive: true,
      filter: (src) => !src.startsWith(path.join(k8s, "validate")),
    });
    const edit = (file, fn) => {
      const docs = readYamlDocuments(path.join(dir, file));
      fn(docs);
      fs.writeFileSync(
        path.join(dir, file),
        docs.map((d) => JSON.stringify(d, null, 1)).join("\n---\n"),
      );
    };
    c.change(edit, dir);
    roots.push(dir);
  }
  const [real, ...cases] = validateRoots(roots, { flagsFile });

  // The tree as committed.
  const problems = [...real.problems, ...real.results.flatMap((r) => r.problems)];
  check(
    `deploy/k8s passes (${real.results.map((r) => `${r.dir}: ${r.objects.length} objects`).join(", ")})`,
    problems.length === 0,
    problems.join("\n"),
  );
  const dirs = real.results.map((r) => r.dir).sort();
  check(
    `the kustomizations are ${ALL.join(", ")}`,
    JSON.stringify(dirs) === JSON.stringify(ALL),
    dirs.join(", "),
  );
  for (const r of real.results) {
    const kinds = r.objects.map((o) => `${o.kind}/${o.metadata.name}`).sort();
    const want = [
      "PodDisruptionBudget/logpd",
      "Service/logpd",
      "Service/logpd-pods",
      "StatefulSet/logpd",
      ...(REPLICAS.includes(r.dir)
        ? [
            "NetworkPolicy/postgres",
            "PersistentVolumeClaim/logpd-data",
            "PodDisruptionBudget/postgres",
            "Service/postgres",
            "Service/postgres-pods",
            "StatefulSet/postgres",
          ]
        : []),
    ].sort();
    check(
      `${r.dir} renders ${want.join(", ")}`,
      JSON.stringify(kinds) === JSON.stringify(want),
      kinds.join(", "),
    );
  }

  // Each defect, caught where expected, with the expected messages only.
  CASES.forEach((c, i) => {
    const result = cases[i];
    const expect = Array.isArray(c.expect)
      ? Object.fromEntries(c.expect.map((d) => [d, c.messages]))
      : c.expect;
    const got = { "": result.problems };
    for (const r of result.results) got[r.dir] = r.problems;
    const errors = [];
    for (const [dir, list] of Object.entries(got)) {
      const wanted = expect[dir] ?? [];
      for (const m of wanted)
        if (!list.some((p) => p.includes(m))) errors.push(`${dir || "(tree)"}: missing "${m}"`);
      for (const p of list)
        if (!wanted.some((m) => p.includes(m)))
          errors.push(`${dir || "(tree)"}: unexpected "${p}"`);
    }
    for (const dir of Object.keys(expect))
      if (!(dir in got)) errors.push(`no kustomization ${dir}`);
    // A password of the defect never appears in a message.
    for (const p of Object.values(got).flat())
      if (c.secret && p.includes(c.secret)) errors.push(`the password is in "${p}"`);
    check(`rejects ${c.name}`, errors.length === 0, errors.join("\n"));
  });

  // kubectl's kustomize, where there is one: the same objects.
  let kubectl = null;
  try {
    execFileSync("kubectl", ["version", "--client"], { stdio: "ignore" });
    kubectl = "kubectl";
  } catch {
    console.log("note: no kubectl here: the renderer is not compared with kubectl kustomize");
  }
  for (const dir of kubectl ? ALL : []) {
    let text;
    try {
      text = execFileSync(kubectl, ["kustomize", path.join(k8s, dir)], {
        encoding: "utf8",
        stdio: ["ignore", "pipe", "pipe"],
      });
    } catch (e) {
      console.log(
        `note: kubectl kustomize ${dir} failed (an older kustomize?): ${String(e.stderr).trim()}`,
      );
      continue;
    }
    const file = path.join(tmp, "kubectl.yaml");
    fs.writeFileSync(file, text);
    const key = (o) => `${o.kind}/${o.metadata?.name}`;
    const theirs = new Map(
      readYamlDocuments(file).map((o) => [key(o), JSON.stringify(canonical(o))]),
    );
    const mine = new Map(
      render(path.join(k8s, dir)).map((o) => [key(o), JSON.stringify(canonical(o))]),
    );
    const differ = [...new Set([...theirs.keys(), ...mine.keys()])].filter(
      (k) => theirs.get(k) !== mine.get(k),
    );
    check(
      `${dir}: kubectl kustomize renders the same objects`,
      differ.length === 0,
      `differ: ${differ.join(", ")}`,
    );
  }
} finally {
  fs.rmSync(tmp, { recursive: true, force: true });
}
console.log(
  `(kubernetes-types ${KUBERNETES_TYPES_VERSION}; ${((Date.now() - started) / 1000).toFixed(1)} s)`,
);
console.log(`${passed} passed, ${failed} failed`);
process.exitCode = failed === 0 ? 0 : 1;
