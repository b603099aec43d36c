// ctest's dashboard_test: logpd's web dashboard in headless Chromium (Debian's, driven by
// playwright-core) against a real logpd and its HTTP server.
//   node dashboard_test.mjs LOGPD LOGPCTL
// Run 1 (no authentication): a dataset (binarized Fashion-MNIST test set) uploaded with logpctl,
// a Bernoulli model and a long MADE job. The page loads with no console error; both jobs appear
// with their state; the running job's NLL curve gains points over time (counted from the page),
// also after its event stream broke (reconnected with from_seq = last seq + 1);
// the generalization gap and a finished job's stop reason are shown; the model shows its
// evaluation (equal to the REST API's) and a grid of 16 samples; Cancel on the page moves the
// job to CANCELLED.
// Run 2 (--auth_tokens_file): the page asks for a token; with a reader's, Cancel shows 403
// PERMISSION_DENIED and the job keeps running; with a writer's, Cancel works.
// LOGP_DASHBOARD_SCREENSHOT=FILE also writes a screenshot of run 1's training job (docs/).
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const [logpd, logpctl] = process.argv.slice(2);
if (!logpd || !logpctl) throw new Error("usage: dashboard_test.mjs LOGPD LOGPCTL");
const DATA = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz";
const screenshot = process.env.LOGP_DASHBOARD_SCREENSHOT || "";
const work = mkdtempSync(join(tmpdir(), "logp-dashboard-test-"));
const servers = [];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const t0 = Date.now();
const log = (...a) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1)}s]`, ...a);

function fail(message) {
  throw new Error(message);
}
function check(condition, message) {
  if (!condition) fail(message);
}

// Starts logpd on free loopback ports; resolves to {grpc, http, url, proc, dir}.
async function startLogpd(name, extra = []) {
  const dir = join(work, name);
  execFileSync("mkdir", ["-p", join(dir, "data")]);
  const args = [
    `--data_dir=${join(dir, "data")}`, "--listen=127.0.0.1:0", `--port_file=${join(dir, "port")}`,
    "--http_listen=127.0.0.1:0", `--http_port_file=${join(dir, "http_port")}`, ...extra,
  ];
  const out = join(dir, "log");
  const { openSync } = await import("node:fs");
  const fd = openSync(out, "w");
  const proc = spawn(logpd, args, { stdio: ["ignore", fd, fd] });
  const server = { proc, dir, log: out };
  servers.push(server);
  for (let i = 0; i < 200; i++) {
    if (existsSync(join(dir, "port")) && existsSync(join(dir, "http_port"))) {
      const grpc = readFileSync(join(dir, "port"), "utf8").trim();
      const http = readFileSync(join(dir, "http_port"), "utf8").trim();
      if (grpc && http) {
        Object.assign(server, { grpc, http, url: `http://127.0.0.1:${http}/` });
        return server;
      }
    }
    if (proc.exitCode !== null) break;
    await sleep(100);
  }
  fail(`logpd ${name} did not start:\n${readFileSync(out, "utf8").slice(-2000)}`);
}

function ctl(server, args, token) {
  const base = [`--server=127.0.0.1:${server.grpc}`, "--json"];
  if (token) base.push(`--token=${token}`);
  const out = execFileSync(logpctl, [...base, ...args], { encoding: "utf8" });
  return JSON.parse(out.trim().split("\n").pop());
}

async function rest(server, method, path, body, token) {
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  const r = await fetch(server.url + path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await r.json();
  if (!r.ok) fail(`${method} ${path}: ${r.status} ${JSON.stringify(json)}`);
  return json;
}

// The first n event blocks of job id's stream as the server sends them.
async function firstEvents(server, id, n) {
  const abort = new AbortController();
  const r = await fetch(`${server.url}v1/jobs/${id}:watch?from_seq=1`, { signal: abort.signal });
  const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (text.split("event: job_event").length <= n) {
    const { value, done } = await reader.read();
    if (done) break;
    text += value;
  }
  abort.abort();
  const blocks = text.split("\n\n").filter((b) => b.includes("event: job_event")).slice(0, n);
  check(blocks.length === n, `the first ${n} events of ${id}: ${text}`);
  return blocks.map((b) => `${b}\n\n`).join("");
}

async function waitFor(what, fn, timeoutMs = 20000, everyMs = 200) {
  const end = Date.now() + timeoutMs;
  let last;
  while (Date.now() < end) {
    last = await fn();
    if (last) return last;
    await sleep(everyMs);
  }
  fail(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
}

function upload(server, token) {
  const ds = ctl(server, ["datasets", "upload", DATA, "--kind=binary", "--binarize_threshold=127",
    "--name=fmnist-test"], token);
  check(ds.id && ds.imageShape && ds.imageShape.height === 28, `upload: ${JSON.stringify(ds)}`);
  return ds;
}

// A job long enough to watch (about a second an epoch here), cancelled from the page.
function longJob(server, ds, token) {
  return ctl(server, ["jobs", "create", `--dataset=${ds.id}`, "--family=made",
    "--hidden_units=300", "--epochs=500", "--seed=1"], token);
}

const errorsOf = (page) => {
  const errors = [];
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(`console: ${m.text()}`);
  });
  page.on("pageerror", (e) => errors.push(`page error: ${e}`));
  return errors;
};

const jobRow = (page, id) => page.locator(`#job-rows tr[data-job-id="${id}"]`);
// The state a job's row shows (undefined while there is no row); does not wait.
const stateOf = (page, id) =>
  page.evaluate((id) => document.querySelector(`#job-rows tr[data-job-id="${id}"]`)?.dataset.state, id);
const attr = (page, sel, name) => page.getAttribute(sel, name);
const points = async (page) => ({
  train: Number(await attr(page, "#chart", "data-train-points")),
  validation: Number(await attr(page, "#chart", "data-validation-points")),
});

async function runOpen(context) {
  const server = await startLogpd("open");
  log(`logpd at grpc ${server.grpc}, http ${server.http}`);
  const ds = upload(server);
  // A closed-form model that finishes at once, for the models section (first: one job slot).
  // For the screenshot, a short MADE instead, whose samples look like clothes.
  const quick = ctl(server, ["jobs", "create", `--dataset=${ds.id}`,
    ...(screenshot ? ["--family=made", "--hidden_units=300", "--epochs=4", "--seed=2"]
      : ["--family=bernoulli", "--model_json={\"bernoulli\":{\"pseudoCount\":0.5}}"])]);
  const long = longJob(server, ds);
  const page = await context.newPage();
  const errors = errorsOf(page);
  // A broken stream: the MADE job's first watch gets its first 3 real events, then the
  // connection ends without `event: end`; the page must reconnect with from_seq=4.
  const watches = [];
  await page.route(/:watch\?/, async (route) => {
    const url = route.request().url();
    watches.push(url);
    if (!url.includes(long.id) || watches.filter((u) => u.includes(long.id)).length > 1) {
      return route.continue();
    }
    await route.fulfill({ status: 200, contentType: "text/event-stream",
      body: await firstEvents(server, long.id, 3) });
  });
  await page.goto(server.url);
  check((await page.title()) === "logp dashboard", `title ${await page.title()}`);
  await waitFor("the dataset's row", () => page.locator(`#dataset-rows tr[data-key="${ds.id}"]`).count());
  await waitFor("both jobs on the page", async () =>
    (await jobRow(page, long.id).count()) === 1 && (await jobRow(page, quick.id).count()) === 1);
  await waitFor("the MADE job RUNNING on the page", async () =>
    (await stateOf(page, long.id)) === "JOB_STATE_RUNNING", 30000);
  log("jobs listed; MADE job running");

  // Its live curve: select it, then count points twice.
  await jobRow(page, long.id).locator("td").first().click();
  await waitFor("the detail of the MADE job",
    async () => (await page.textContent("#detail-id")) === long.id);
  const first = await waitFor("a first point", async () => {
    const p = await points(page);
    return p.train >= 2 ? p : null;
  }, 20000);
  const later = await waitFor("the curve gaining points", async () => {
    const p = await points(page);
    return p.train >= first.train + 4 && p.validation >= 3 ? p : null;
  }, 30000);
  log(`curve: ${first.train} then ${later.train} training points, ${later.validation} validation`);
  const resumed = watches.filter((u) => u.includes(long.id));
  check(resumed.length >= 2 && resumed[1].endsWith(`${long.id}:watch?from_seq=4`),
    `after the broken stream: ${JSON.stringify(resumed)}`);
  check((await page.textContent("#detail-live")) === "live", "the stream is not live");
  const gap = await page.textContent("#detail-gap");
  check(/^-?\d+\.\d\d nats \(epoch \d+/.test(gap), `generalization gap shown as "${gap}"`);
  const epochRows = await page.locator("#epoch-rows tr").count();
  check(epochRows === later.validation || epochRows >= 2, `epoch rows ${epochRows}`);

  if (screenshot) {
    await waitFor("6 epochs for the screenshot", async () => (await points(page)).validation >= 6,
      40000);
    await waitFor("the model's samples for the screenshot",
      async () => (await attr(page, "#samples", "data-samples")) === "16");
    await page.waitForTimeout(500);
    await page.screenshot({ path: screenshot, fullPage: true });
    log(`screenshot written to ${screenshot}`);
  }

  // The finished job: its stop reason.
  const quickJob = await rest(server, "GET", `v1/jobs/${quick.id}`);
  check(quickJob.state === "JOB_STATE_SUCCEEDED", `quick job ${JSON.stringify(quickJob)}`);
  check(quickJob.stopReason, "the finished job has no stop_reason to show");
  await waitFor("the quick job SUCCEEDED on the page", async () =>
    (await stateOf(page, quick.id)) === "JOB_STATE_SUCCEEDED");
  const reasonCell = await jobRow(page, quick.id).locator("td").nth(6).textContent();
  check(reasonCell === quickJob.stopReason, `stop reason cell "${reasonCell}"`);
  await jobRow(page, quick.id).locator("td").first().click();
  await waitFor("the stop reason in the detail",
    async () => (await page.textContent("#detail-stop")) === quickJob.stopReason);
  log(`stop reason shown: ${quickJob.stopReason}`);

  // The model: evaluation (as the API computes it), score kind, 16 samples drawn.
  const modelId = quickJob.modelId;
  const modelRow = page.locator(`#model-rows tr[data-key="${modelId}"]`);
  await waitFor("the model's row", () => modelRow.count());
  await modelRow.locator("td").first().click();
  const scoreKind = await modelRow.locator("td").nth(7).textContent();
  check(scoreKind === "exact", `score kind "${scoreKind}"`);
  await waitFor("the evaluation", async () =>
    (await attr(page, "#evaluation", "data-done")) === "true", 30000);
  const evaluation = await page.textContent("#evaluation");
  const truth = await rest(server, "POST", `v1/models/${modelId}:evaluate`, { datasetId: ds.id });
  check(evaluation.includes(`mean NLL ${Number(truth.meanNll).toFixed(3)} ±`),
    `evaluation "${evaluation}" (API: ${truth.meanNll})`);
  check(evaluation.includes("10,000 records") && evaluation.includes("exact"), evaluation);
  await waitFor("16 samples drawn", async () => (await attr(page, "#samples", "data-samples")) === "16");
  const grid = await page.evaluate(() => {
    const c = document.getElementById("samples");
    const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    let white = 0;
    for (let i = 0; i < d.length; i += 4) if (d[i] === 255) white++;
    return { width: c.width, height: c.height, white };
  });
  check(grid.width === 8 * 29 + 1 && grid.height === 2 * 29 + 1 && grid.white > 0,
    `sample grid ${JSON.stringify(grid)}`);
  log(`model ${modelId}: "${evaluation}", grid ${grid.width}x${grid.height}`);

  // Cancel from the page.
  await jobRow(page, long.id).locator("button.cancel").click();
  await waitFor("the MADE job CANCELLED on the page", async () =>
    (await stateOf(page, long.id)) === "JOB_STATE_CANCELLED", 20000);
  const cancelled = await rest(server, "GET", `v1/jobs/${long.id}`);
  check(cancelled.state === "JOB_STATE_CANCELLED", `after cancel: ${cancelled.state}`);
  check((await jobRow(page, long.id).locator("button.cancel").count()) === 0,
    "a cancelled job still has its Cancel button");
  log("cancelled from the page");
  check(errors.length === 0, `console errors:\n${errors.join("\n")}`);
  await page.close();
}

async function runAuth(context) {
  const tokens = join(work, "tokens");
  writeFileSync(tokens, "writer-token-1 team-a writer\nreader-token-1 team-a reader\n");
  const server = await startLogpd("auth", [`--auth_tokens_file=${tokens}`]);
  const long = longJob(server, upload(server, "writer-token-1"), "writer-token-1");
  const page = await context.newPage();
  const errors = errorsOf(page);
  await page.goto(server.url);
  await waitFor("the token dialog", () => page.locator("#token-dialog[open]").count());
  log("the page asks for a token");
  await page.fill("#token-input", "reader-token-1");
  await page.click("#token-submit");
  await waitFor("the job listed with the reader's token", async () =>
    (await stateOf(page, long.id)) ===
    "JOB_STATE_RUNNING", 30000);
  const token = await page.evaluate(() => sessionStorage.getItem("logp.token"));
  check(token === "reader-token-1", `sessionStorage token ${token}`);
  await jobRow(page, long.id).locator("button.cancel").click();
  await waitFor("403 shown", async () => {
    const m = page.locator("#message");
    return (await m.isVisible()) && /PERMISSION_DENIED \(403\)/.test(await m.textContent());
  });
  log(`reader: "${await page.textContent("#message")}"`);
  check((await rest(server, "GET", `v1/jobs/${long.id}`, undefined, "reader-token-1")).state ===
    "JOB_STATE_RUNNING", "the reader's cancel stopped the job");
  await page.click("#token-button");
  await page.fill("#token-input", "writer-token-1");
  await page.click("#token-submit");
  await jobRow(page, long.id).locator("button.cancel").click();
  await waitFor("the job CANCELLED by the writer", async () =>
    (await stateOf(page, long.id)) === "JOB_STATE_CANCELLED", 20000);
  log("writer cancelled");
  // Chromium logs every 401 and 403 response as a console error; nothing else may appear.
  const unexpected = errors.filter(
    (e) => !/Failed to load resource: the server responded with a status of 40[13]/.test(e));
  check(unexpected.length === 0, `console errors:\n${unexpected.join("\n")}`);
  check(errors.length >= 2, `expected the 401 and the 403 in the console, got ${errors.length}`);
  await page.close();
}

let context;
let status = 0;
try {
  const profile = join(work, "chromium-profile");
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.LOGP_CHROMIUM || "/usr/bin/chromium",
    headless: true,
    viewport: { width: 1280, height: 1000 },
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
      "--no-first-run", "--disable-component-update", "--disable-sync"],
  });
  await runOpen(context);
  await runAuth(context);
  log("PASS");
} catch (e) {
  status = 1;
  console.log(`FAIL: ${e.message}`);
  for (const s of servers) {
    console.log(`--- ${s.log} (tail)`);
    try {
      console.log(readFileSync(s.log, "utf8").split("\n").slice(-20).join("\n"));
    } catch {}
  }
} finally {
  if (context) await context.close().catch(() => {});
  for (const s of servers) {
    if (s.proc.exitCode === null) {
      s.proc.kill("SIGTERM");
      await new Promise((r) => {
        const t = setTimeout(() => { s.proc.kill("SIGKILL"); r(); }, 10000);
        s.proc.on("exit", () => { clearTimeout(t); r(); });
      });
    }
  }
  rmSync(work, { recursive: true, force: true });
}
process.exit(status);
