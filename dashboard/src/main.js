// logp's dashboard: datasets, jobs (state, progress, live NLL curves over server-sent events,
// generalization gap, stop reason, cancel), models (evaluation, score kind, sample grid).
import "./style.css";
import { ApiError, call, getToken, setToken, setTokenPrompt, watchJob } from "./api.js";
import { NllChart } from "./chart.js";
import { decodeRecords, drawGrid } from "./samples.js";

const $ = (id) => document.getElementById(id);
const short = (s, prefix) => (s || "").replace(prefix, "");
const enumName = (s, prefix) => short(s, prefix).toLowerCase().replace(/_/g, " ");
const fmt = (x, digits = 2) =>
  x === undefined || x === null || !Number.isFinite(Number(x)) ? "–" : Number(x).toFixed(digits);
const ACTIVE = new Set(["JOB_STATE_QUEUED", "JOB_STATE_RUNNING"]);

const state = {
  datasets: [],
  jobs: new Map(),
  models: [],
  selectedJob: null,
  watch: null, // {id, abort, epochs: [], lastEpoch}
  selectedModel: null,
  evaluations: new Map(), // "model|dataset" -> EvaluateResponse
  sampleSeed: 1,
};

// ---- messages and the token dialog ----

let messageTimer = null;
function showMessage(text, kind = "error") {
  const box = $("message");
  box.textContent = text;
  box.className = kind;
  box.hidden = false;
  clearTimeout(messageTimer);
  messageTimer = setTimeout(() => (box.hidden = true), 15000);
}

function updateTokenState() {
  $("token-state").textContent = getToken() ? "token set" : "no token";
}

let tokenResolve = null;
function promptToken(reason) {
  $("token-reason").textContent = `The server asks for a token: ${reason}`;
  $("token-input").value = "";
  const dialog = $("token-dialog");
  if (!dialog.open) dialog.showModal();
  return new Promise((resolve) => (tokenResolve = resolve));
}

function setUpTokenDialog() {
  setTokenPrompt(promptToken);
  $("token-form").addEventListener("submit", () => {
    setToken($("token-input").value.trim());
    updateTokenState();
    const resolve = tokenResolve;
    tokenResolve = null;
    if (resolve) resolve();
    else refreshAll();
  });
  // Closed without a token (Escape, "Forget token"): the waiting calls try again and ask again.
  $("token-dialog").addEventListener("close", () => {
    const resolve = tokenResolve;
    tokenResolve = null;
    if (resolve) setTimeout(resolve, 1000);
  });
  $("token-clear").addEventListener("click", () => {
    setToken("");
    updateTokenState();
    $("token-dialog").close();
  });
  $("token-button").addEventListener("click", () => {
    $("token-reason").textContent = "Bearer token for this server (a writer's to cancel jobs).";
    $("token-input").value = "";
    $("token-dialog").showModal();
  });
  updateTokenState();
}

// ---- keyed table rows ----

// Makes tbody hold one row per item, in order, reusing rows by key; fill(tr, item) sets cells.
function syncRows(tbody, items, key, fill) {
  const existing = new Map([...tbody.children].map((tr) => [tr.dataset.key, tr]));
  let previous = null;
  for (const item of items) {
    const k = key(item);
    let tr = existing.get(k);
    if (!tr) {
      tr = document.createElement("tr");
      tr.dataset.key = k;
    }
    existing.delete(k);
    fill(tr, item);
    const want = previous ? previous.nextSibling : tbody.firstChild;
    if (want !== tr) tbody.insertBefore(tr, want);
    previous = tr;
  }
  for (const tr of existing.values()) tr.remove();
}

function cells(tr, n) {
  while (tr.children.length < n) tr.appendChild(document.createElement("td"));
  return [...tr.children];
}

function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

// ---- jobs ----

// The family of a JobSpec (spec.model) or of a Model's ModelSpec.
function familyOf(modelSpec) {
  return enumName(modelSpec?.family, "MODEL_FAMILY_");
}

function progressText(job) {
  const step = Number(job.step || 0);
  const total = Number(job.totalSteps || 0);
  if (!total) return step ? `step ${step}` : "–";
  return `${step} / ${total} (${((100 * step) / total).toFixed(0)}%)`;
}

function fillJobRow(tr, job) {
  tr.dataset.jobId = job.id;
  tr.dataset.state = job.state;
  tr.classList.toggle("selected", job.id === state.selectedJob);
  const [id, family, dataset, st, progress, best, reason, actions] = cells(tr, 8);
  setText(id, job.id);
  setText(family, familyOf(job.spec?.model));
  setText(dataset, job.spec?.datasetId || "");
  setText(st, enumName(job.state, "JOB_STATE_"));
  st.className = `state ${short(job.state, "JOB_STATE_").toLowerCase()}`;
  const total = Number(job.totalSteps || 0);
  const fraction = total ? Math.min(1, Number(job.step || 0) / total) : 0;
  progress.style.setProperty("--fraction", String(fraction));
  progress.className = "progress";
  setText(progress, progressText(job));
  setText(best, Number(job.bestValidationNll) ? fmt(job.bestValidationNll) : "–");
  setText(reason, job.error || job.stopReason || "");
  const active = ACTIVE.has(job.state);
  let button = actions.querySelector("button");
  if (active && !button) {
    button = document.createElement("button");
    button.type = "button";
    button.className = "cancel";
    button.textContent = "Cancel";
    button.addEventListener("click", (e) => {
      e.stopPropagation();
      cancelJob(tr.dataset.jobId, button);
    });
    actions.appendChild(button);
  } else if (!active && button) {
    button.remove();
  }
}

function renderJobs() {
  const jobs = [...state.jobs.values()].sort((a, b) =>
    (b.createTime || "").localeCompare(a.createTime || "") || b.id.localeCompare(a.id),
  );
  syncRows($("job-rows"), jobs, (j) => j.id, fillJobRow);
  $("jobs-empty").hidden = jobs.length > 0;
  renderJobDetail();
}

async function cancelJob(id, button) {
  button.disabled = true;
  try {
    const job = await call("POST", `v1/jobs/${encodeURIComponent(id)}:cancel`, {});
    state.jobs.set(job.id, job);
    showMessage(`Cancel requested for ${id}.`, "info");
    renderJobs();
  } catch (e) {
    showMessage(`Cancel ${id}: ${e.message}`);
  } finally {
    button.disabled = false;
  }
}

function selectJob(id) {
  if (state.selectedJob === id) return;
  state.selectedJob = id;
  if (state.watch) state.watch.abort.abort();
  state.watch = null;
  chart.clear();
  $("epoch-rows").replaceChildren();
  const job = state.jobs.get(id);
  if (job) startWatch(job);
  renderJobs();
}

function startWatch(job) {
  const watch = { id: job.id, abort: new AbortController(), epochs: [], lastEpoch: null };
  state.watch = watch;
  setText($("detail-live"), "connecting…");
  watchJob(
    job.id,
    1,
    {
      event: (ev) => onJobEvent(watch, ev),
      end: () => refreshJob(watch.id),
      error: (e) => showMessage(`Watching ${watch.id}: ${e.message}`),
      status: (text) => {
        if (state.watch === watch) setText($("detail-live"), text);
      },
    },
    watch.abort.signal,
  );
}

function onJobEvent(watch, ev) {
  if (state.watch !== watch) return;
  const job = state.jobs.get(watch.id);
  if (ev.progress) {
    chart.addProgress(ev.progress);
    if (job && Number(ev.progress.step) > Number(job.step || 0)) {
      job.step = ev.progress.step;
      job.totalSteps = ev.progress.totalSteps;
      scheduleRender();
    }
    setText($("detail-epoch"), String(ev.progress.epoch));
  } else if (ev.epochSummary) {
    const e = ev.epochSummary;
    chart.addEpoch(e);
    watch.epochs = watch.epochs.filter((x) => x.epoch !== e.epoch).concat([e]);
    watch.lastEpoch = e;
    // The listing is polled; the stream's best epoch is newer.
    if (job && e.isBest) job.bestValidationNll = e.validationNll;
    addEpochRow(e);
    scheduleRender();
  } else if (ev.stateChange) {
    if (job) job.state = ev.stateChange.state;
    scheduleRender();
    refreshJob(watch.id);
  } else if (ev.warning) {
    showMessage(`${watch.id}: ${ev.warning.message}`, "info");
  }
}

function addEpochRow(e) {
  const rows = $("epoch-rows");
  const existing = rows.querySelector(`tr[data-epoch="${e.epoch}"]`);
  const tr = existing || document.createElement("tr");
  tr.dataset.epoch = String(e.epoch);
  tr.replaceChildren();
  const values = [
    String(e.epoch), String(e.step), fmt(e.trainNll), fmt(e.trainEvalNll),
    `${fmt(e.validationNll)} ± ${fmt(e.validationStandardError)}`, fmt(e.generalizationGap),
    e.isBest ? "★" : "", fmt(e.samplesPerSecond, 0),
  ];
  for (const v of values) {
    const td = document.createElement("td");
    td.textContent = v;
    tr.appendChild(td);
  }
  if (!existing) rows.prepend(tr);
}

let renderPending = false;
function scheduleRender() {
  if (renderPending) return;
  renderPending = true;
  requestAnimationFrame(() => {
    renderPending = false;
    renderJobs();
  });
}

function renderJobDetail() {
  const job = state.jobs.get(state.selectedJob);
  $("job-detail").hidden = !job;
  if (!job) return;
  setText($("detail-id"), job.id);
  const st = $("detail-state");
  setText(st, enumName(job.state, "JOB_STATE_"));
  st.className = `state ${short(job.state, "JOB_STATE_").toLowerCase()}`;
  setText($("detail-progress"), progressText(job));
  setText($("detail-best"), Number(job.bestValidationNll) ? fmt(job.bestValidationNll) : "–");
  const last = state.watch?.id === job.id ? state.watch.lastEpoch : null;
  setText(
    $("detail-gap"),
    last ? `${fmt(last.generalizationGap)} nats (epoch ${last.epoch}: validation ${fmt(
      last.validationNll)} − training subset ${fmt(last.trainEvalNll)})` : "– (after the first epoch)",
  );
  setText(
    $("detail-stop"),
    job.stopReason || job.error || (ACTIVE.has(job.state) ? "– (still training)" : "–"),
  );
}

async function refreshJob(id) {
  try {
    const job = await call("GET", `v1/jobs/${encodeURIComponent(id)}`);
    state.jobs.set(job.id, job);
    renderJobs();
  } catch (e) {
    showMessage(`Job ${id}: ${e.message}`);
  }
}

async function refreshJobs() {
  const r = await call("GET", "v1/jobs?page_size=100");
  const jobs = new Map();
  for (const job of r.jobs || []) {
    const known = state.jobs.get(job.id);
    // Live progress from the stream can be newer than the listing.
    if (known && Number(known.step || 0) > Number(job.step || 0) && job.state === known.state) {
      job.step = known.step;
      job.bestValidationNll = known.bestValidationNll;
    }
    jobs.set(job.id, job);
  }
  state.jobs = jobs;
  if (!state.selectedJob || !jobs.has(state.selectedJob)) {
    const list = [...jobs.values()];
    const pick = list.find((j) => j.state === "JOB_STATE_RUNNING") || list[0];
    if (pick) selectJob(pick.id);
  }
  renderJobs();
}

// ---- datasets ----

function renderDatasets() {
  const fill = (tr, d) => {
    const [id, name, kind, records, dim, image, stored, created] = cells(tr, 8);
    setText(id, d.id);
    setText(name, d.name || "");
    setText(kind, enumName(d.kind, "DATA_KIND_"));
    setText(records, Number(d.numRecords || 0).toLocaleString("en"));
    setText(dim, String(d.dim));
    const s = d.imageShape;
    setText(image, s && s.height ? `${s.height}×${s.width}×${s.channels || 1}` : "–");
    setText(stored, `${(Number(d.storedBytes || 0) / 1e6).toFixed(1)} MB`);
    setText(created, (d.createTime || "").replace("T", " ").replace(/\..*|Z/, ""));
  };
  syncRows($("dataset-rows"), state.datasets, (d) => d.id, fill);
  $("datasets-empty").hidden = state.datasets.length > 0;
  const select = $("evaluate-dataset");
  const chosen = select.value;
  syncOptions(select, state.datasets);
  if (chosen) select.value = chosen;
}

function syncOptions(select, datasets) {
  const want = datasets.map((d) => `${d.id}|${d.name}`).join(",");
  if (select.dataset.options === want) return;
  select.dataset.options = want;
  select.replaceChildren(
    ...datasets.map((d) => {
      const o = document.createElement("option");
      o.value = d.id;
      o.textContent = d.name ? `${d.name} (${d.id})` : d.id;
      return o;
    }),
  );
}

// ---- models ----

function renderModels() {
  const fill = (tr, m) => {
    tr.dataset.modelId = m.id;
    tr.classList.toggle("selected", m.id === state.selectedModel);
    const [id, family, dataset, kind, dim, params, nll, score] = cells(tr, 8);
    setText(id, m.id);
    setText(family, familyOf(m.spec));
    setText(dataset, m.datasetId || "");
    setText(kind, enumName(m.kind, "DATA_KIND_"));
    setText(dim, String(m.dim));
    setText(params, Number(m.numParameters || 0).toLocaleString("en"));
    setText(nll, fmt(m.validationNll));
    setText(score, enumName(m.scoreKind, "SCORE_KIND_"));
  };
  syncRows($("model-rows"), state.models, (m) => m.id, fill);
  $("models-empty").hidden = state.models.length > 0;
  if (!state.models.some((m) => m.id === state.selectedModel) && state.models.length) {
    selectModel(state.models[0].id);
  }
}

function modelById(id) {
  return state.models.find((m) => m.id === id);
}

function selectModel(id) {
  const model = modelById(id);
  if (!model) return;
  state.selectedModel = id;
  $("model-detail").hidden = false;
  setText($("model-id"), id);
  const select = $("evaluate-dataset");
  syncOptions(select, state.datasets);
  select.value = model.datasetId;
  for (const tr of $("model-rows").children) tr.classList.toggle("selected", tr.dataset.key === id);
  showEvaluation(model, select.value, true);
  const image = model.imageShape && model.imageShape.height > 0;
  $("samples-box").hidden = !image;
  $("samples").dataset.samples = "0";
  if (image) drawSamples(model);
}

async function showEvaluation(model, datasetId, auto) {
  const out = $("evaluation");
  const key = `${model.id}|${datasetId}`;
  const cached = state.evaluations.get(key);
  if (cached) {
    out.textContent = evaluationText(cached, datasetId);
    return;
  }
  if (!datasetId) return;
  out.textContent = `evaluating on ${datasetId}…`;
  out.dataset.done = "false";
  try {
    const r = await call("POST", `v1/models/${encodeURIComponent(model.id)}:evaluate`, {
      datasetId,
    });
    state.evaluations.set(key, r);
    if (state.selectedModel === model.id) {
      out.textContent = evaluationText(r, datasetId);
      out.dataset.done = "true";
    }
  } catch (e) {
    if (state.selectedModel === model.id) out.textContent = `evaluation failed: ${e.message}`;
    if (!auto) showMessage(`Evaluate ${model.id}: ${e.message}`);
  }
}

function evaluationText(r, datasetId) {
  const kind = enumName(r.scoreKind, "SCORE_KIND_");
  const k = r.importanceSamples ? `, k = ${r.importanceSamples}` : "";
  return (
    `${datasetId}: ${Number(r.numRecords).toLocaleString("en")} records, mean NLL ` +
    `${fmt(r.meanNll, 3)} ± ${fmt(r.standardError, 3)} nats (95% interval ` +
    `[${fmt(r.ci95Low, 3)}, ${fmt(r.ci95High, 3)}]), ${fmt(r.bitsPerDim, 4)} bits/dim, ${kind}${k}`
  );
}

async function drawSamples(model) {
  try {
    const r = await call("POST", `v1/models/${encodeURIComponent(model.id)}:sample`, {
      numSamples: "16",
      seed: String(state.sampleSeed),
    });
    if (state.selectedModel !== model.id) return;
    const rows = decodeRecords(r.records);
    let max = 1;
    if (model.kind === "DATA_KIND_CATEGORICAL") max = Math.max(1, model.numCategories - 1);
    if (model.kind === "DATA_KIND_CONTINUOUS") {
      max = Math.max(1, (model.spec?.preprocessing?.levels || 256) - 1);
    }
    drawGrid($("samples"), rows, model.imageShape, max);
  } catch (e) {
    showMessage(`Sample ${model.id}: ${e.message}`);
  }
}

// ---- refreshing ----

const chart = new NllChart($("chart"));

async function refreshAll() {
  try {
    const [datasets, models] = await Promise.all([
      call("GET", "v1/datasets?page_size=100"),
      call("GET", "v1/models?page_size=100"),
      refreshJobs(),
    ]);
    state.datasets = datasets.datasets || [];
    state.models = models.models || [];
    renderDatasets();
    renderModels();
    setText($("connection"), `updated ${new Date().toLocaleTimeString("en-GB")}`);
    $("connection").className = "muted";
  } catch (e) {
    setText($("connection"), e instanceof ApiError ? e.message : `server unreachable (${e.message})`);
    $("connection").className = "bad";
  }
}

function setUp() {
  setUpTokenDialog();
  $("job-rows").addEventListener("click", (e) => {
    const tr = e.target.closest("tr");
    if (tr) selectJob(tr.dataset.key);
  });
  $("model-rows").addEventListener("click", (e) => {
    const tr = e.target.closest("tr");
    if (tr) selectModel(tr.dataset.key);
  });
  $("evaluate-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const model = modelById(state.selectedModel);
    if (model) showEvaluation(model, $("evaluate-dataset").value, false);
  });
  $("resample").addEventListener("click", () => {
    state.sampleSeed += 1;
    const model = modelById(state.selectedModel);
    if (model) drawSamples(model);
  });
  refreshAll();
  let busy = false;
  setInterval(async () => {
    if (busy || document.hidden || $("token-dialog").open) return;
    busy = true;
    await refreshAll();
    busy = false;
  }, 2000);
}

setUp();
