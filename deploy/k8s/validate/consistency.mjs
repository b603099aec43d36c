// What a schema cannot check: that the objects of one rendered kustomization fit each other
// and logpd. Each check returns problems as {object: "Kind/name", path, message}.
import fs from "node:fs";

const LOGPD = "/usr/local/bin/logpd"; // the image's binary (Dockerfile)
const USER = 10001; // the image's user and group logp (Dockerfile)
const MIN_MEMORY_LIMIT = 2 * 2 ** 30; // training MADE on Fashion-MNIST peaks below 2 GiB
const SHUTDOWN_SLACK_SECONDS = 10; // closing, the last checkpoints and exit after the grace
const DEFAULT_SHUTDOWN_GRACE_SECONDS = 10; // logpd's --shutdown_grace_seconds default
// logpd flags that name a file it reads (and re-reads when it changes).
const FILE_FLAGS = [
  "tls_cert_file",
  "tls_key_file",
  "tls_client_ca_file",
  "auth_tokens_file",
  "quotas_file",
];

// logpd's flags, from the ABSL_FLAG definitions of server/main.cc: name -> type.
export function readLogpdFlags(mainCc) {
  const flags = new Map();
  const text = fs.readFileSync(mainCc, "utf8");
  for (const m of text.matchAll(/ABSL_FLAG\(\s*([\w:]+)\s*,\s*(\w+)\s*,/g)) flags.set(m[2], m[1]);
  if (flags.size === 0) throw new Error(`${mainCc}: no ABSL_FLAG definitions found`);
  return flags;
}

function isSubset(small, big) {
  const entries = Object.entries(small ?? {});
  return entries.length > 0 && entries.every(([k, v]) => big?.[k] === v);
}

function sameLabels(a, b) {
  return isSubset(a, b) && isSubset(b, a);
}

// Bytes of a memory quantity, cores of a CPU quantity; NaN when unparsable.
function memoryBytes(q) {
  const m = /^([0-9.]+)(Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(String(q));
  if (!m) return NaN;
  const unit = {
    Ki: 2 ** 10,
    Mi: 2 ** 20,
    Gi: 2 ** 30,
    Ti: 2 ** 40,
    k: 1e3,
    M: 1e6,
    G: 1e9,
    T: 1e12,
  };
  return Number(m[1]) * (m[2] ? unit[m[2]] : 1);
}

function cpuCores(q) {
  const m = /^([0-9.]+)(m)?$/.exec(String(q));
  return m ? Number(m[1]) / (m[2] ? 1000 : 1) : NaN;
}

function hostPort(value) {
  const m = /:([0-9]+)$/.exec(value);
  return m ? Number(m[1]) : NaN;
}

// Parses logpd's args ("--name=value", "--name", "--noname" for booleans) against its flags.
function parseArgs(args, flags, report) {
  const values = new Map();
  args.forEach((arg, i) => {
    const where = `args[${i}]`;
    const m = /^--([A-Za-z0-9_]+)(?:=(.*))?$/s.exec(arg);
    if (!m) {
      report(where, `'${arg}' is not a --flag=value (logpd takes no positional arguments)`);
      return;
    }
    let [, name, value] = m;
    if (
      !flags.has(name) &&
      name.startsWith("no") &&
      flags.get(name.slice(2)) === "bool" &&
      value === undefined
    ) {
      name = name.slice(2);
      value = "false";
    }
    if (!flags.has(name)) {
      report(where, `--${name} is not a logpd flag (server/main.cc)`);
      return;
    }
    if (value === undefined) {
      if (flags.get(name) !== "bool") {
        report(where, `--${name} needs a value (--${name}=...)`);
        return;
      }
      value = "true";
    }
    if (values.has(name)) report(where, `--${name} given twice`);
    values.set(name, value);
  });
  return values;
}

function podsOf(workload) {
  return workload.spec?.template;
}

// All problems of one rendered kustomization.
export function checkConsistency(objects, flags) {
  const problems = [];
  const at = (o) => (where, message) =>
    problems.push({ object: `${o.kind}/${o.metadata?.name}`, path: where, message });
  const workloads = objects.filter((o) => o.kind === "StatefulSet" || o.kind === "Deployment");
  const services = objects.filter((o) => o.kind === "Service");
  const budgets = objects.filter((o) => o.kind === "PodDisruptionBudget");

  for (const w of workloads) {
    const report = at(w);
    const pod = podsOf(w) ?? {};
    const podLabels = pod.metadata?.labels ?? {};
    if (!isSubset(w.spec?.selector?.matchLabels, podLabels)) {
      report("spec.selector.matchLabels", "does not select the pod template's labels");
    }
    if (w.kind === "StatefulSet") {
      const governing = services.find((s) => s.metadata?.name === w.spec?.serviceName);
      if (!governing || governing.spec?.clusterIP !== "None") {
        report(
          "spec.serviceName",
          `no headless Service '${w.spec?.serviceName}' in the same kustomization`,
        );
      }
    }
    const replicas = w.spec?.replicas ?? 1;
    if (typeof replicas === "number" && replicas !== 1) {
      // (a non-number: the schema's error)
      report("spec.replicas", "one data directory serves one logpd (SQLite catalogue): 1 replica");
    }
    if (
      !services.some((s) => isSubset(s.spec?.selector, podLabels) && s.spec?.clusterIP !== "None")
    ) {
      report("spec.template.metadata.labels", "no ClusterIP Service selects these pods");
    }
    const budget = budgets.find((b) => isSubset(b.spec?.selector?.matchLabels, podLabels));
    if (!budget) {
      report("spec.template.metadata.labels", "no PodDisruptionBudget selects these pods");
    } else if (!sameLabels(budget.spec.selector.matchLabels, w.spec?.selector?.matchLabels)) {
      at(budget)(
        "spec.selector.matchLabels",
        `differs from ${w.kind}/${w.metadata?.name}'s selector`,
      );
    } else if ((w.spec?.replicas ?? 1) === 1) {
      const { maxUnavailable, minAvailable } = budget.spec;
      if (
        !(
          maxUnavailable === 0 ||
          maxUnavailable === "0%" ||
          minAvailable === 1 ||
          minAvailable === "100%"
        )
      ) {
        at(budget)(
          "spec",
          "one replica: the budget must allow no voluntary eviction (maxUnavailable: 0)",
        );
      }
    }
    checkPod(w, pod, flags, report);
  }

  for (const s of services) {
    const report = at(s);
    const selected = workloads.filter((w) =>
      isSubset(s.spec?.selector, podsOf(w)?.metadata?.labels),
    );
    if (selected.length !== 1) {
      report("spec.selector", `selects ${selected.length} workloads' pods, not 1`);
      continue;
    }
    const containers = podsOf(selected[0]).spec?.containers ?? [];
    const ports = containers.flatMap((c) => c.ports ?? []);
    (s.spec?.ports ?? []).forEach((p, i) => {
      const target = p.targetPort ?? p.port;
      const found = ports.some((cp) =>
        typeof target === "string" ? cp.name === target : cp.containerPort === target,
      );
      if (!found)
        report(
          `spec.ports[${i}].targetPort`,
          `${target} is not a port of the selected pods' containers`,
        );
      if (p.name === "grpc" && p.appProtocol !== "grpc")
        report(`spec.ports[${i}].appProtocol`, "gRPC: grpc");
    });
  }

  for (const b of budgets) {
    if (
      !workloads.some((w) => isSubset(b.spec?.selector?.matchLabels, podsOf(w)?.metadata?.labels))
    ) {
      at(b)("spec.selector.matchLabels", "selects no workload's pods");
    }
  }
  return problems;
}

function checkPod(w, pod, flags, report) {
  const spec = pod.spec ?? {};
  const base = "spec.template.spec";
  const psc = spec.securityContext ?? {};
  if (psc.runAsNonRoot !== true) report(`${base}.securityContext.runAsNonRoot`, "must be true");
  for (const field of ["runAsUser", "runAsGroup", "fsGroup"]) {
    if (psc[field] !== USER)
      report(`${base}.securityContext.${field}`, `must be ${USER} (the image's user logp)`);
  }
  const volumes = new Map((spec.volumes ?? []).map((v) => [v.name, v]));
  const claims = new Map((w.spec?.volumeClaimTemplates ?? []).map((c) => [c.metadata?.name, c]));
  if (volumes.size !== (spec.volumes ?? []).length)
    report(`${base}.volumes`, "two volumes of one name");
  for (const name of volumes.keys()) {
    if (claims.has(name)) report(`${base}.volumes`, `'${name}' is also a volumeClaimTemplate`);
  }
  const mounted = new Set();

  (spec.containers ?? []).forEach((c, ci) => {
    const cbase = `${base}.containers[${ci}]`;
    const sc = c.securityContext ?? {};
    if (sc.readOnlyRootFilesystem !== true)
      report(`${cbase}.securityContext.readOnlyRootFilesystem`, "must be true");
    if (sc.allowPrivilegeEscalation !== false) {
      report(`${cbase}.securityContext.allowPrivilegeEscalation`, "must be false");
    }
    if (!(sc.capabilities?.drop ?? []).includes("ALL"))
      report(`${cbase}.securityContext.capabilities.drop`, "must hold ALL");
    if ((sc.capabilities?.add ?? []).length > 0)
      report(`${cbase}.securityContext.capabilities.add`, "must be empty");
    if (sc.privileged === true) report(`${cbase}.securityContext.privileged`, "must not be true");
    if (sc.runAsNonRoot === false)
      report(`${cbase}.securityContext.runAsNonRoot`, "must not be false");
    if (sc.runAsUser !== undefined && sc.runAsUser !== USER)
      report(`${cbase}.securityContext.runAsUser`, `must be ${USER}`);
    if ((sc.seccompProfile?.type ?? psc.seccompProfile?.type) !== "RuntimeDefault") {
      report(
        `${cbase}.securityContext.seccompProfile.type`,
        "RuntimeDefault (here or for the pod)",
      );
    }

    // Mounts.
    const mounts = c.volumeMounts ?? [];
    const paths = new Set();
    mounts.forEach((m, mi) => {
      if (!volumes.has(m.name) && !claims.has(m.name)) {
        report(
          `${cbase}.volumeMounts[${mi}].name`,
          `'${m.name}' is no volume or volumeClaimTemplate`,
        );
      }
      if (paths.has(m.mountPath))
        report(`${cbase}.volumeMounts[${mi}].mountPath`, `${m.mountPath} mounted twice`);
      paths.add(m.mountPath);
      mounted.add(m.name);
    });
    const mountAt = (file) =>
      mounts
        .filter(
          (m) => file === m.mountPath || file.startsWith(`${m.mountPath.replace(/\/$/, "")}/`),
        )
        .sort((a, b) => b.mountPath.length - a.mountPath.length)[0];
    const emptyDirAt = (dir) =>
      mounts.some((m) => m.mountPath === dir && volumes.get(m.name)?.emptyDir);

    // Ports and probes.
    const ports = c.ports ?? [];
    const names = ports.map((p) => p.name).filter(Boolean);
    if (new Set(names).size !== names.length) report(`${cbase}.ports`, "two ports of one name");
    const isPort = (p) =>
      ports.some((cp) => (typeof p === "string" ? cp.name === p : cp.containerPort === p));
    for (const probe of ["startupProbe", "livenessProbe", "readinessProbe"]) {
      const pr = c[probe];
      if (!pr) {
        if (probe !== "startupProbe") report(`${cbase}.${probe}`, "missing");
        continue;
      }
      const port = pr.grpc?.port ?? pr.httpGet?.port ?? pr.tcpSocket?.port;
      if (port !== undefined && !isPort(port))
        report(`${cbase}.${probe}`, `port ${port} is not a port of the container`);
    }

    // Resources.
    for (const kind of ["requests", "limits"]) {
      for (const r of ["cpu", "memory"]) {
        if (c.resources?.[kind]?.[r] === undefined)
          report(`${cbase}.resources.${kind}.${r}`, "missing");
      }
    }
    const memoryLimit = memoryBytes(c.resources?.limits?.memory);
    if (!(memoryLimit >= MIN_MEMORY_LIMIT)) {
      report(`${cbase}.resources.limits.memory`, "at least 2Gi (training MADE on Fashion-MNIST)");
    }

    // A read-only root: logpd's temporary files (TMPDIR) on an emptyDir.
    const tmpdir = (c.env ?? []).find((e) => e.name === "TMPDIR")?.value;
    if (
      sc.readOnlyRootFilesystem === true &&
      !(tmpdir && emptyDirAt(tmpdir) && emptyDirAt("/tmp"))
    ) {
      report(`${cbase}.env`, "a read-only root needs an emptyDir at /tmp and TMPDIR on one");
    }

    if (!isLogpd(c)) return;
    const args = parseArgs(c.args ?? [], flags, (where, message) =>
      report(`${cbase}.${where}`, message),
    );

    const dataDir = args.get("data_dir");
    const dataMount = dataDir && mounts.find((m) => m.mountPath === dataDir);
    if (!dataMount || !claims.has(dataMount.name)) {
      report(
        `${cbase}.args`,
        `--data_dir (${dataDir}) must be the mountPath of a volumeClaimTemplate`,
      );
    } else {
      const claim = claims.get(dataMount.name);
      if (!(claim.spec?.accessModes ?? []).includes("ReadWriteOnce")) {
        report(
          "spec.volumeClaimTemplates",
          `'${claim.metadata.name}': ReadWriteOnce (one logpd per data directory)`,
        );
      }
      if (!claim.spec?.resources?.requests?.storage) {
        report("spec.volumeClaimTemplates", `'${claim.metadata.name}': no storage request`);
      }
    }

    const listenPort = hostPort(args.get("listen") ?? "");
    if (!ports.some((p) => p.name === "grpc" && p.containerPort === listenPort)) {
      report(
        `${cbase}.ports`,
        `--listen's port ${listenPort} must be the container port named grpc`,
      );
    }
    const healthPort = args.has("health_listen") ? hostPort(args.get("health_listen")) : undefined;
    if (healthPort !== undefined && !isPort(healthPort)) {
      report(`${cbase}.ports`, `--health_listen's port ${healthPort} is not a container port`);
    }
    // The kubelet's gRPC probe speaks plaintext without a client certificate: with TLS on the
    // main port it must probe the --health_listen port.
    const tls = args.has("tls_cert_file");
    for (const probe of ["startupProbe", "livenessProbe", "readinessProbe"]) {
      const port = c[probe]?.grpc?.port;
      if (!c[probe]) continue;
      if (port === undefined) {
        report(`${cbase}.${probe}`, "a grpc probe (logpd serves grpc.health.v1)");
      } else if (tls && port !== healthPort) {
        report(
          `${cbase}.${probe}.grpc.port`,
          `${port}: with TLS the probes must use --health_listen's port`,
        );
      } else if (!tls && port !== listenPort && port !== healthPort) {
        report(
          `${cbase}.${probe}.grpc.port`,
          `${port} is neither --listen's nor --health_listen's port`,
        );
      }
    }
    if (args.has("tls_key_file") !== tls)
      report(`${cbase}.args`, "--tls_cert_file and --tls_key_file go together");
    if (args.has("tls_client_ca_file") && !tls)
      report(`${cbase}.args`, "--tls_client_ca_file needs --tls_cert_file");

    for (const flag of FILE_FLAGS) {
      const file = args.get(flag);
      if (file === undefined) continue;
      const m = mountAt(file);
      const v = m && volumes.get(m.name);
      const source = v?.secret ?? v?.configMap;
      if (!source || m.readOnly !== true) {
        report(
          `${cbase}.args`,
          `--${flag}=${file} must lie on a read-only Secret or ConfigMap mount`,
        );
        continue;
      }
      if (m.subPath !== undefined)
        report(`${cbase}.volumeMounts`, `${m.mountPath}: no subPath (updates would not arrive)`);
      const relative = file.slice(m.mountPath.replace(/\/$/, "").length + 1);
      if (source.items && !source.items.some((it) => it.path === relative)) {
        report(
          `${cbase}.args`,
          `--${flag}=${file}: volume '${m.name}' has no item with path ${relative}`,
        );
      }
    }

    const threads = Number(args.get("compute_threads") ?? "0");
    const cpuLimit = cpuCores(c.resources?.limits?.cpu);
    if (
      !(Number.isInteger(threads) && threads >= 1 && threads <= Math.max(1, Math.ceil(cpuLimit)))
    ) {
      report(
        `${cbase}.args`,
        `--compute_threads (${threads}) must be from 1 to the CPU limit (0 means the node's cores)`,
      );
    }
    const grace = Number(args.get("shutdown_grace_seconds") ?? DEFAULT_SHUTDOWN_GRACE_SECONDS);
    const termination = spec.terminationGracePeriodSeconds ?? 30;
    if (!(termination >= grace + SHUTDOWN_SLACK_SECONDS)) {
      report(
        `${base}.terminationGracePeriodSeconds`,
        `${termination}: at least --shutdown_grace_seconds (${grace}) + ${SHUTDOWN_SLACK_SECONDS}`,
      );
    }
  });

  const logpd = (spec.containers ?? []).filter(isLogpd).length;
  if (logpd !== 1) {
    report(`${base}.containers`, `${logpd} containers run ${LOGPD}, not 1 (command: [${LOGPD}])`);
  }
  for (const name of [...volumes.keys(), ...claims.keys()]) {
    if (!mounted.has(name)) report(`${base}.volumes`, `'${name}' is mounted by no container`);
  }
}

// The container whose args are logpd's: it names the binary (so that its flags are checked
// here, not left to the image's entrypoint).
function isLogpd(c) {
  return c.command?.[0] === LOGPD && c.command.length === 1;
}
