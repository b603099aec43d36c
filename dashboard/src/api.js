// logpd's REST API (server/http/rest_gateway.h): JSON calls with the bearer token of this tab,
// a token prompt when a call answers 401, and WatchJob's server-sent events read with fetch()
// (EventSource cannot send an Authorization header), resumed with from_seq after a break.

const TOKEN_KEY = "logp.token";

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

export class ApiError extends Error {
  constructor(httpStatus, status, message) {
    super(`${status || "HTTP " + httpStatus} (${httpStatus}): ${message}`);
    this.httpStatus = httpStatus;
    this.status = status;
  }
}

// The UI's prompt: (reason) => Promise that settles once the user gave a token.
let tokenPrompt = null;
let pendingPrompt = null;
export function setTokenPrompt(fn) {
  tokenPrompt = fn;
}

// One prompt for however many calls answered 401 at the same time.
function askForToken(reason) {
  if (!tokenPrompt) return Promise.reject(new ApiError(401, "UNAUTHENTICATED", reason));
  if (!pendingPrompt) {
    pendingPrompt = Promise.resolve(tokenPrompt(reason)).finally(() => {
      pendingPrompt = null;
    });
  }
  return pendingPrompt;
}

function headers(json) {
  const h = {};
  const token = getToken();
  if (token) h.Authorization = `Bearer ${token}`;
  if (json) h["Content-Type"] = "application/json";
  return h;
}

async function errorOf(response) {
  const text = await response.text();
  try {
    const e = JSON.parse(text).error || {};
    return new ApiError(response.status, e.status, e.message || text);
  } catch {
    return new ApiError(response.status, response.statusText, text.slice(0, 300));
  }
}

// method, path relative to the page ("v1/jobs"), optional body object.
export async function call(method, path, body) {
  for (;;) {
    const response = await fetch(path, {
      method,
      headers: headers(body !== undefined),
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (response.ok) {
      const text = await response.text();
      return text ? JSON.parse(text) : {};
    }
    const error = await errorOf(response);
    if (response.status !== 401) throw error;
    await askForToken(error.message);
  }
}

const RETRYABLE = new Set([429, 500, 502, 503, 504]);
const sleep = (ms, signal) =>
  new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(t);
      resolve();
    });
  });

// Parses one SSE block ("field: value" lines) into {event, id, data}.
function parseBlock(block) {
  const out = { event: "message", id: null, data: [] };
  for (const raw of block.split("\n")) {
    const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") out.event = value;
    else if (field === "id") out.id = value;
    else if (field === "data") out.data.push(value);
  }
  out.data = out.data.join("\n");
  return out;
}

// Watches job `id` from seq `fromSeq` until its stream ends or `signal` aborts. handlers:
// event(JobEvent), end(), error(ApiError) for a final error, status(text) for the connection.
// A dropped connection (or a retryable error) reconnects with from_seq = last seq + 1.
export async function watchJob(id, fromSeq, handlers, signal) {
  let next = fromSeq;
  let delay = 500;
  while (!signal.aborted) {
    try {
      const url = `v1/jobs/${encodeURIComponent(id)}:watch?from_seq=${next}`;
      const response = await fetch(url, { headers: headers(false), signal });
      if (!response.ok) {
        const error = await errorOf(response);
        if (response.status === 401) {
          await askForToken(error.message);
          continue;
        }
        if (!RETRYABLE.has(response.status)) {
          handlers.error(error);
          return;
        }
        throw error;
      }
      handlers.status("live");
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = parseBlock(buffer.slice(0, cut));
          buffer = buffer.slice(cut + 2);
          if (block.event === "job_event") {
            const ev = JSON.parse(block.data);
            next = Number(ev.seq) + 1;
            delay = 500;
            handlers.event(ev);
          } else if (block.event === "end") {
            handlers.status("ended");
            handlers.end();
            return;
          } else if (block.event === "error") {
            const e = JSON.parse(block.data).error || {};
            const error = new ApiError(e.code || 500, e.status, e.message || "");
            if (!RETRYABLE.has(error.httpStatus)) {
              handlers.error(error);
              return;
            }
            throw error;
          }
        }
      }
      handlers.status("reconnecting (stream closed)");
    } catch (e) {
      if (signal.aborted) return;
      handlers.status(`reconnecting (${e.message || e})`);
    }
    if (signal.aborted) return;
    await sleep(delay, signal);
    delay = Math.min(delay * 2, 5000);
  }
}
