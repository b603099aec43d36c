// What a schema cannot check: that the objects of one rendered kustomization fit each other
// and logpd. Each check returns problems as {object: "Kind/name", path, message}. Every
// workload is checked for selectors, Services, budgets, mounts, probes, resources and its
// securityContext; logpd's (labelled app.kubernetes.io/name=logpd or running the logp image)
// also for its flags, and for the rule of replicas: more than one exactly when --catalog is a
// PostgreSQL URI and --data_dir is one ReadWriteMany claim that every pod mounts; that URI's
// host a Service of the rendering, its password in a Secret and in no URI or manifest.
import fs from "node:fs";

const LOGPD = "/usr/local/bin/logpd"; // the image's binary (Dockerfile)
const USER = 10001; // the image's user and group logp (Dockerfile)
const POSTGRES_PORT = 5432; // libpq's default port
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

// Parses logpd's args ("--name=value", "--name", "--noname" for booleans) against its flags:
// name -> value. report(where, message) for each problem.
export function parseArgs(args, flags, report) {
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

function decode(s) {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

// A libpq connection URI, postgresql://[USER[:PASSWORD]@][HOST[:PORT][,...]][/DB][?PARAMS],
// as {user, password, hosts: [{host, port}], db, params}; null when it is none. The parameters
// host, port, user, password and dbname override the parts before them, as in libpq.
export function parsePostgresUri(uri) {
  const m = /^postgres(?:ql)?:\/\/([^/?]*)(?:\/([^?]*))?(?:\?(.*))?$/s.exec(uri);
  if (!m) return null;
  let [, authority, db = "", query = ""] = m;
  let user;
  let password;
  const at = authority.lastIndexOf("@");
  if (at >= 0) {
    const info = authority.slice(0, at);
    authority = authority.slice(at + 1);
    const colon = info.indexOf(":");
    user = decode(colon < 0 ? info : info.slice(0, colon));
    if (colon >= 0) password = decode(info.slice(colon + 1));
  }
  const params = new Map(
    query
      .split("&")
      .filter(Boolean)
      .map((kv) => {
        const eq = kv.indexOf("=");
        return eq < 0 ? [decode(kv), ""] : [decode(kv.slice(0, eq)), decode(kv.slice(eq + 1))];
      }),
  );
  let hosts = [];
  for (const part of authority === "" ? [] : authority.split(",")) {
    const hp = /^(\[[^\]]*\]|[^:[\]]*)(?::([0-9]*))?$/.exec(part);
    if (!hp) return null;
    hosts.push({ host: decode(hp[1].replace(/^\[(.*)\]$/, "$1")), port: hp[2] || undefined });
  }
  if (params.has("host")) hosts = params.get("host").split(",").map((host) => ({ host }));
  if (params.has("port")) {
    const ports = params.get("port").split(",");
    hosts.forEach((h, i) => (h.port = ports.length === 1 ? ports[0] : ports[i]));
  }
  for (const h of hosts) h.port = h.port === undefined ? POSTGRES_PORT : Number(h.port);
  return {
    user: params.get("user") ?? user,
    password: params.get("password") ?? password,
    hosts,
    db: params.get("dbname") ?? decode(db),
    params,
  };
}

// The variable names a Kubernetes args entry refers to as $(NAME) ($$(NAME) is a literal).
function variableRefs(arg) {
  return [...arg.matchAll(/(\$*)\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g)]
    .filter((m) => m[1].length % 2 === 0)
    .map((m) => m[2]);
}

function podsOf(workload) {
  return workload.spec?.template;
}

function replicasOf(workload) {
  const r = workload.spec?.replicas ?? 1;
  return typeof r === "number" ? r : 1; // (a non-number: the schema's error)
}

// The container whose args are logpd's: it names the binary (so that its flags are checked
// here, not left to the image's entrypoint).
function isLogpd(c) {
  return c.command?.[0] === LOGPD && c.command.length === 1;
}

// A workload meant to run logpd: its pods are labelled so (as the base labels them) or one of
// its containers runs the logp image. It must then run logpd itself (isLogpd).
function isLogpdWorkload(w) {
  const pod = podsOf(w);
  return (
    pod?.metadata?.labels?.["app.kubernetes.io/name"] === "logpd" ||
    (pod?.spec?.containers ?? []).some(
      (c) => typeof c.image === "string" && /(^|\/)logp(:[^/]*)?$/.test(c.image.split("@")[0]),
    )
  );
}

function secretRefOf(env) {
  return env?.valueFrom?.secretKeyRef;
}

// All problems of one rendered kustomization.
export function checkConsistency(objects, flags) {
  const problems = [];
  const at = (o) => (where, message) =>
    problems.push({ object: `${o.kind}/${o.metadata?.name}`, path: where, message });
  const workloads = objects.filter((o) => o.kind === "StatefulSet" || o.kind === "Deployment");
  const services = objects.filter((o) => o.kind === "Service");
  const budgets = objects.filter((o) => o.kind === "PodDisruptionBudget");
  const claims = objects.filter((o) => o.kind === "PersistentVolumeClaim");
  const policies = objects.filter((o) => o.kind === "NetworkPolicy");
  const selecting = (selector) =>
    workloads.filter((w) => isSubset(selector, podsOf(w)?.metadata?.labels));
  const context = { objects, workloads, services, claims, policies, selecting, flags, at };

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
    if (
      !services.some((s) => isSubset(s.spec?.selector, podLabels) && s.spec?.clusterIP !== "None")
    ) {
      report("spec.template.metadata.labels", "no ClusterIP Service selects these pods");
    }
    const replicas = replicasOf(w);
    const budget = budgets.find((b) => isSubset(b.spec?.selector?.matchLabels, podLabels));
    if (!budget) {
      report("spec.template.metadata.labels", "no PodDisruptionBudget selects these pods");
    } else if (!sameLabels(budget.spec.selector.matchLabels, w.spec?.selector?.matchLabels)) {
      at(budget)(
        "spec.selector.matchLabels",
        `differs from ${w.kind}/${w.metadata?.name}'s selector`,
      );
    } else if (replicas === 1) {
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
    } else if (replicas > 1 && !(budget.spec.maxUnavailable === 1)) {
      at(budget)(
        "spec",
        `${replicas} replicas of ${w.kind}/${w.metadata?.name}: maxUnavailable: 1 (a drain ` +
          "takes one at a time; the others serve and take over its jobs)",
      );
    }
    for (const [i, t] of (pod.spec?.topologySpreadConstraints ?? []).entries()) {
      if (!isSubset(t.labelSelector?.matchLabels, podLabels)) {
        report(
          `spec.template.spec.topologySpreadConstraints[${i}].labelSelector`,
          "does not select these pods (it would spread nothing)",
        );
      }
    }
    checkPod(w, pod, context, report);
  }

  for (const s of services) {
    const report = at(s);
    if (s.spec?.type === "ExternalName") continue; // a name outside the cluster: no pods
    const selected = selecting(s.spec?.selector);
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
    if (selecting(b.spec?.selector?.matchLabels).length === 0) {
      at(b)("spec.selector.matchLabels", "selects no workload's pods");
    }
  }

  for (const c of claims) {
    const report = at(c);
    const users = workloads.filter((w) =>
      (podsOf(w)?.spec?.volumes ?? []).some(
        (v) => v.persistentVolumeClaim?.claimName === c.metadata?.name,
      ),
    );
    if (users.length === 0) report("metadata.name", "mounted by no workload");
    if ((c.spec?.accessModes ?? []).length === 0) report("spec.accessModes", "missing");
    if (!c.spec?.resources?.requests?.storage) report("spec.resources.requests", "no storage");
  }

  // Nothing secret is committed: Secrets are made in the cluster (deploy/k8s/README.md).
  for (const o of objects.filter((x) => x.kind === "Secret")) {
    if (Object.keys(o.data ?? {}).length > 0 || Object.keys(o.stringData ?? {}).length > 0) {
      at(o)("data", "a Secret with values in the manifests: create it in the cluster instead");
    }
  }

  for (const p of policies) {
    const report = at(p);
    const targets = selecting(p.spec?.podSelector?.matchLabels);
    if (targets.length === 0) report("spec.podSelector", "selects no workload's pods");
    (p.spec?.ingress ?? []).forEach((rule, r) => {
      (rule.from ?? []).forEach((peer, i) => {
        const labels = peer.podSelector?.matchLabels ?? {};
        if (
          peer.podSelector &&
          !peer.namespaceSelector &&
          Object.keys(labels).length > 0 &&
          selecting(labels).length === 0
        ) {
          report(`spec.ingress[${r}].from[${i}].podSelector`, "selects no workload's pods");
        }
      });
      const ports = targets.flatMap((w) =>
        (podsOf(w).spec?.containers ?? []).flatMap((c) => c.ports ?? []),
      );
      (rule.ports ?? []).forEach((port, i) => {
        if (
          port.port !== undefined &&
          !ports.some((cp) =>
            typeof port.port === "string" ? cp.name === port.port : cp.containerPort === port.port,
          )
        ) {
          report(`spec.ingress[${r}].ports[${i}].port`, `${port.port} is not a port of its pods`);
        }
      });
    });
  }
  return problems;
}

// Whether the NetworkPolicies let pods labelled `from` reach `workload`'s container port
// `port` (a number). No policy selecting the workload's pods for ingress: all traffic may.
function ingressAllowed(policies, workload, from, port) {
  const labels = podsOf(workload)?.metadata?.labels;
  const containerPorts = (podsOf(workload)?.spec?.containers ?? []).flatMap((c) => c.ports ?? []);
  const matchesPort = (p) =>
    p.port === undefined ||
    (typeof p.port === "string"
      ? containerPorts.some((cp) => cp.name === p.port && cp.containerPort === port)
      : p.port === port);
  const applying = policies.filter(
    (p) =>
      isSubset(p.spec?.podSelector?.matchLabels, labels) ||
      Object.keys(p.spec?.podSelector?.matchLabels ?? {}).length === 0,
  );
  const forIngress = applying.filter((p) =>
    (p.spec?.policyTypes ?? ["Ingress"]).includes("Ingress"),
  );
  if (forIngress.length === 0) return true;
  return forIngress.some((p) =>
    (p.spec?.ingress ?? []).some(
      (rule) =>
        ((rule.from ?? []).length === 0 ||
          rule.from.some(
            (peer) =>
              peer.podSelector &&
              !peer.namespaceSelector &&
              (Object.keys(peer.podSelector.matchLabels ?? {}).length === 0 ||
                isSubset(peer.podSelector.matchLabels, from)),
          )) &&
        ((rule.ports ?? []).length === 0 || rule.ports.some(matchesPort)),
    ),
  );
}

function checkPod(w, pod, context, report) {
  const { flags } = context;
  const spec = pod.spec ?? {};
  const base = "spec.template.spec";
  const logpdPod = isLogpdWorkload(w);
  const psc = spec.securityContext ?? {};
  if (psc.runAsNonRoot !== true) report(`${base}.securityContext.runAsNonRoot`, "must be true");
  for (const field of ["runAsUser", "runAsGroup", "fsGroup"]) {
    if (logpdPod && psc[field] !== USER) {
      report(`${base}.securityContext.${field}`, `must be ${USER} (the image's user logp)`);
    } else if (!logpdPod && !(Number.isInteger(psc[field]) && psc[field] > 0)) {
      report(`${base}.securityContext.${field}`, "must be the image's user, not root (0)");
    }
  }
  const volumes = new Map((spec.volumes ?? []).map((v) => [v.name, v]));
  const claims = new Map((w.spec?.volumeClaimTemplates ?? []).map((c) => [c.metadata?.name, c]));
  if (volumes.size !== (spec.volumes ?? []).length)
    report(`${base}.volumes`, "two volumes of one name");
  for (const [name, v] of volumes) {
    if (claims.has(name)) report(`${base}.volumes`, `'${name}' is also a volumeClaimTemplate`);
    const claimName = v.persistentVolumeClaim?.claimName;
    if (claimName !== undefined && !context.claims.some((c) => c.metadata?.name === claimName)) {
      report(
        `${base}.volumes`,
        `'${name}': claim '${claimName}' is not in this kustomization (nothing checks it)`,
      );
    }
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
    if (sc.runAsUser !== undefined && sc.runAsUser !== (logpdPod ? USER : psc.runAsUser))
      report(`${cbase}.securityContext.runAsUser`, `must be ${logpdPod ? USER : psc.runAsUser}`);
    if ((sc.seccompProfile?.type ?? psc.seccompProfile?.type) !== "RuntimeDefault") {
      report(
        `${cbase}.securityContext.seccompProfile.type`,
        "RuntimeDefault (here or for the pod)",
      );
    }

    // Secret values come from Secrets, never from the manifest.
    const env = c.env ?? [];
    env.forEach((e, ei) => {
      if (/PASSWORD|SECRET|TOKEN/i.test(e.name) && e.value !== undefined) {
        report(
          `${cbase}.env[${ei}]`,
          `${e.name} in plain text in the manifest: valueFrom.secretKeyRef (a Secret)`,
        );
      }
      if (secretRefOf(e)?.optional === true) {
        report(
          `${cbase}.env[${ei}].valueFrom.secretKeyRef.optional`,
          `${e.name}: a missing Secret must stop the pod, not start it without ${e.name}`,
        );
      }
    });

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

    if (!isLogpd(c)) return;
    const memoryLimit = memoryBytes(c.resources?.limits?.memory);
    if (!(memoryLimit >= MIN_MEMORY_LIMIT)) {
      report(`${cbase}.resources.limits.memory`, "at least 2Gi (training MADE on Fashion-MNIST)");
    }

    // A read-only root: logpd's temporary files (TMPDIR) on an emptyDir.
    const tmpdir = env.find((e) => e.name === "TMPDIR")?.value;
    if (
      sc.readOnlyRootFilesystem === true &&
      !(tmpdir && emptyDirAt(tmpdir) && emptyDirAt("/tmp"))
    ) {
      report(`${cbase}.env`, "a read-only root needs an emptyDir at /tmp and TMPDIR on one");
    }

    const args = parseArgs(c.args ?? [], flags, (where, message) =>
      report(`${cbase}.${where}`, message),
    );
    // $(NAME) in an argument: the kubelet substitutes the container's variable NAME, and passes
    // the text unchanged when there is none.
    const envNames = new Set(env.map((e) => e.name));
    (c.args ?? []).forEach((arg, i) => {
      for (const name of variableRefs(String(arg))) {
        if (!envNames.has(name)) {
          report(
            `${cbase}.args[${i}]`,
            `$(${name}) is no env variable of the container (it would stay as it is)`,
          );
        }
      }
    });

    checkDataDirectory(w, c, cbase, args, mounts, volumes, claims, context, report);
    if (args.has("catalog") && /^postgres(ql)?:\/\//.test(args.get("catalog"))) {
      checkCatalog(w, c, cbase, args.get("catalog"), context, report);
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
  if (logpdPod && logpd !== 1) {
    report(`${base}.containers`, `${logpd} containers run ${LOGPD}, not 1 (command: [${LOGPD}])`);
  }
  for (const name of [...volumes.keys(), ...claims.keys()]) {
    if (!mounted.has(name)) report(`${base}.volumes`, `'${name}' is mounted by no container`);
  }
}

// --data_dir on a claim, and the one rule of replicas: several need the PostgreSQL catalogue
// and one data directory that all of them mount (a ReadWriteMany claim); with SQLite, one
// logpd owns its data directory (ReadWriteOnce, one replica, never two pods at once).
function checkDataDirectory(w, c, cbase, args, mounts, volumes, templates, context, report) {
  const dataDir = args.get("data_dir");
  const dataMount = dataDir && mounts.find((m) => m.mountPath === dataDir);
  const template = dataMount && templates.get(dataMount.name);
  const claimName = dataMount && volumes.get(dataMount.name)?.persistentVolumeClaim?.claimName;
  const shared = claimName && context.claims.find((x) => x.metadata?.name === claimName);
  if (!template && !shared) {
    if (!claimName) {
      report(
        `${cbase}.args`,
        `--data_dir (${dataDir}) must be the mountPath of a volumeClaimTemplate or of a ` +
          "PersistentVolumeClaim of this kustomization",
      );
    }
    return; // (a claim that is not here: reported with the volumes)
  }
  const claim = template ?? shared;
  const where = template ? "spec.volumeClaimTemplates" : `PersistentVolumeClaim/${claimName}`;
  const modes = claim.spec?.accessModes ?? [];
  if (template && !claim.spec?.resources?.requests?.storage) {
    report("spec.volumeClaimTemplates", `'${claim.metadata?.name}': no storage request`);
  }
  const catalog = args.get("catalog") ?? "";
  const postgres = /^postgres(ql)?:\/\//.test(catalog);
  if (catalog !== "" && !postgres) {
    report(`${cbase}.args`, "--catalog: empty (SQLite in --data_dir) or a postgresql:// URI");
  }
  const replicas = replicasOf(w);
  if (replicas > 1) {
    if (!postgres) {
      report(
        "spec.replicas",
        `${replicas} replicas need the shared PostgreSQL catalogue (--catalog=postgresql://...): ` +
          "the SQLite catalogue in --data_dir serves one logpd",
      );
    }
    if (template) {
      report(
        "spec.volumeClaimTemplates",
        `${replicas} replicas: '${claim.metadata?.name}' gives each pod a data directory of its ` +
          "own; the replicas must share one ReadWriteMany PersistentVolumeClaim",
      );
    } else if (!modes.includes("ReadWriteMany")) {
      report(
        `${cbase}.volumeMounts`,
        `${replicas} replicas: claim '${claimName}' must be ReadWriteMany (pods on several nodes ` +
          `mount it at once), not ${modes.join(", ") || "unset"}`,
      );
    }
    const id = args.get("replica_id");
    const podName = (c.env ?? [])
      .filter((e) => e.valueFrom?.fieldRef?.fieldPath === "metadata.name")
      .map((e) => e.name);
    if (id === undefined || !variableRefs(id).some((name) => podName.includes(name))) {
      const why = id === undefined ? "none given" : `'${id}' would be every replica's`;
      report(
        `${cbase}.args`,
        `${replicas} replicas: --replica_id=$(POD_NAME), with POD_NAME the pod's metadata.name ` +
          `from the downward API (${why})`,
      );
    }
  } else if (!postgres && !modes.includes("ReadWriteOnce")) {
    report(
      where === "spec.volumeClaimTemplates" ? where : `${cbase}.volumeMounts`,
      `'${claim.metadata?.name}': ReadWriteOnce (one logpd per data directory)`,
    );
  }
  if (!postgres && w.kind === "Deployment" && w.spec?.strategy?.type !== "Recreate") {
    report(
      "spec.strategy",
      "SQLite: Recreate (a rolling update would run two logpd on one catalogue)",
    );
  }
}

// A PostgreSQL --catalog: no password in it, PGPASSWORD from a Secret, and its host a Service
// of the rendering (with the port), whose server takes its password from the same Secret key.
function checkCatalog(w, c, cbase, catalog, context, report) {
  const { services, selecting, policies, at } = context;
  const uri = parsePostgresUri(catalog);
  if (!uri) {
    report(`${cbase}.args`, "--catalog: not a PostgreSQL URI (postgresql://USER@HOST:PORT/DB)");
    return;
  }
  if (uri.password !== undefined) {
    // Never quote it.
    report(
      `${cbase}.args`,
      "--catalog holds a password (visible to anyone who may read the pod): give it as " +
        "PGPASSWORD from a Secret",
    );
  }
  const env = c.env ?? [];
  const password = env.find((e) => e.name === "PGPASSWORD");
  const ref = secretRefOf(password);
  if (!password) {
    report(`${cbase}.env`, "the catalogue's password: PGPASSWORD from a Secret (secretKeyRef)");
  } else if (!ref && password.value === undefined) {
    report(`${cbase}.env`, "PGPASSWORD: valueFrom.secretKeyRef (a Secret)");
  }
  if (uri.hosts.length === 0) {
    report(`${cbase}.args`, "--catalog names no host (the Service of the PostgreSQL server)");
  }
  const namespaces = new Set(context.objects.map((o) => o.metadata?.namespace));
  for (const { host, port } of uri.hosts) {
    if (host.startsWith("/") || /^[0-9.]+$/.test(host) || host.includes(":")) {
      report(
        `${cbase}.args`,
        `--catalog's host ${host}: name a Service (an address or socket directory is not stable)`,
      );
      continue;
    }
    const [name, namespace, svc, ...rest] = host.split(".");
    if ((svc !== undefined && svc !== "svc") || (svc === undefined && rest.length > 0)) {
      report(`${cbase}.args`, `--catalog's host ${host} is not a Service name`);
      continue;
    }
    if (namespace !== undefined && !(namespaces.size === 1 && namespaces.has(namespace))) {
      report(
        `${cbase}.args`,
        `--catalog's host ${host} names namespace ${namespace}, which this kustomization does ` +
          `not set: use the Service's name alone (${name})`,
      );
      continue;
    }
    const service = services.find((s) => s.metadata?.name === name);
    if (!service) {
      report(
        `${cbase}.args`,
        `--catalog's host '${name}' is no Service of this kustomization (for a server outside ` +
          "the cluster, an ExternalName Service of that name)",
      );
      continue;
    }
    if (service.spec?.type === "ExternalName") continue;
    const servicePort = (service.spec?.ports ?? []).find((p) => p.port === port);
    if (!servicePort) {
      report(`${cbase}.args`, `--catalog's port ${port} is not a port of Service/${name}`);
      continue;
    }
    const [server] = selecting(service.spec?.selector);
    if (!server) continue; // (the Service's own problem)
    const serverReplicas = replicasOf(server);
    if (serverReplicas !== 1) {
      at(server)(
        "spec.replicas",
        `the catalogue of ${w.kind}/${w.metadata?.name}: ${serverReplicas} PostgreSQL pods ` +
          "would be separate databases behind one Service: 1",
      );
    }
    const target = servicePort.targetPort ?? servicePort.port;
    const serverContainers = podsOf(server).spec?.containers ?? [];
    const container = serverContainers.find((sc) =>
      (sc.ports ?? []).some((p) =>
        typeof target === "string" ? p.name === target : p.containerPort === target,
      ),
    );
    const containerPort = (container?.ports ?? []).find((p) =>
      typeof target === "string" ? p.name === target : p.containerPort === target,
    )?.containerPort;
    if (
      containerPort !== undefined &&
      !ingressAllowed(policies, server, podsOf(w)?.metadata?.labels ?? {}, containerPort)
    ) {
      report(
        "spec.template.metadata.labels",
        `the NetworkPolicies keep these pods from ${server.kind}/${server.metadata?.name}'s ` +
          `port ${containerPort} (the catalogue)`,
      );
    }
    // The server's password (PGPASSWORD, as deploy/postgres reads it, or POSTGRES_PASSWORD)
    // must come from the Secret key logpd's does.
    const serverRef = (container?.env ?? [])
      .filter((e) => e.name === "PGPASSWORD" || e.name === "POSTGRES_PASSWORD")
      .map(secretRefOf)
      .find(Boolean);
    if (ref && serverRef && (serverRef.name !== ref.name || serverRef.key !== ref.key)) {
      report(
        `${cbase}.env`,
        `PGPASSWORD is key '${ref.key}' of Secret '${ref.name}', but ${server.kind}/` +
          `${server.metadata?.name}'s password is key '${serverRef.key}' of Secret ` +
          `'${serverRef.name}': one Secret key for both`,
      );
    } else if (ref && container && !serverRef) {
      at(server)(
        `spec.template.spec.containers`,
        "no PGPASSWORD from a Secret: the server would not know logpd's password",
      );
    }
  }
}
