// All HTTP the page makes, through the sidecar's /ml/... with relative URLs (so the page
// also works behind a path prefix). Errors become ApiError with the server's `detail`.

/** An HTTP answer that was not a success, with the server's words for it. */
export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
    this.detail = detail;
  }

  /** "No objects found" is a 404 whose detail starts with those words: a normal outcome. */
  get noObjects() {
    return this.status === 404 && /^No objects found/i.test(this.detail);
  }
}

/** The user (or a newer prompt) stopped the request. */
export class Aborted extends Error {}

async function detailOf(res) {
  const text = await res.text();
  try {
    const body = JSON.parse(text);
    if (typeof body.detail === 'string') return body.detail;
    if (body.detail !== undefined) return JSON.stringify(body.detail);
  } catch {
    // Not JSON (a proxy's HTML page): fall through to the text itself.
  }
  return text.trim().slice(0, 300) || `${res.status} ${res.statusText}`;
}

async function request(url, options = {}) {
  let res;
  try {
    res = await fetch(url, options);
  } catch (error) {
    if (error.name === 'AbortError') throw new Aborted('aborted');
    throw new ApiError(0, `the sidecar cannot be reached (${error.message}).`);
  }
  if (!res.ok) throw new ApiError(res.status, await detailOf(res));
  return res;
}

async function json(url, options) {
  return (await request(url, options)).json();
}

/** A multipart form from an object; undefined/null/"" values are left out (not sent). */
export function formOf(fields) {
  const form = new FormData();
  for (const [name, value] of Object.entries(fields)) {
    if (value === undefined || value === null || value === '') continue;
    form.append(name, value);
  }
  return form;
}

export const getStatus = () => json('ml/status', { cache: 'no-store' });

/** POST ml/start answers like ml/status, with 503 when the server could not start. */
export async function startServer() {
  const res = await fetch('ml/start', { method: 'POST' });
  const body = await res.json().catch(() => ({}));
  return { ok: res.ok, ...body };
}

export const uploadImage = (file) =>
  json('ml/images', { method: 'POST', body: formOf({ file }) });

/** Forget an image at the server; a failure (already expired) does not matter here. */
export function deleteImage(id) {
  return fetch(`ml/images/${encodeURIComponent(id)}`, { method: 'DELETE' }).catch(() => {});
}

export const tilesUrl = (id) => `ml/images/${encodeURIComponent(id)}/tiles/{z}/{x}/{y}.png`;
export const previewUrl = (id, maxSize = 2048) =>
  `ml/images/${encodeURIComponent(id)}/preview.png?max_size=${maxSize}`;
export const resultUrl = (jobId, format) =>
  `ml/jobs/${encodeURIComponent(jobId)}/result${format ? `?output_format=${format}` : ''}`;

/** The synchronous call: POST ml/segment/{mode}; the GeoJSON answer. */
export function segmentSync(mode, fields, signal) {
  return json(`ml/segment/${mode}`, { method: 'POST', body: formOf(fields), signal });
}

/**
 * A run as a job, with progress, falling back to the synchronous call when the backend
 * has no jobs (a plain samgeo-api answers 404 at ml/jobs).
 *
 * @param {string} mode text | automatic | predict
 * @param {object} fields the form
 * @param {{onProgress?: function, onJob?: function, signal: AbortSignal}} hooks
 * @returns {Promise<{geojson: object, jobId: string|null}>}
 */
export async function segment(mode, fields, { onProgress, onJob, signal }) {
  let created;
  try {
    created = await json(`ml/jobs/segment/${mode}`, {
      method: 'POST',
      body: formOf(fields),
      signal,
    });
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      return { geojson: await segmentSync(mode, fields, signal), jobId: null, sync: true };
    }
    throw error;
  }
  const jobId = created.job_id;
  onJob?.(jobId);
  const end = await followJob(jobId, onProgress, signal);
  if (end.status === 'cancelled') throw new Aborted('cancelled');
  // A failed job answers its failure at the result URL (status and detail, "no objects"
  // included), a done one the synchronous call's answer.
  const geojson = await json(resultUrl(jobId), { cache: 'no-store' });
  return { geojson, jobId };
}

const FINAL = ['done', 'failed', 'cancelled'];

/** The job's events until its end status; polling when the event stream fails. */
function followJob(jobId, onProgress, signal) {
  return new Promise((resolve, reject) => {
    const source = new EventSource(`ml/jobs/${encodeURIComponent(jobId)}/events`);
    let finished = false;
    const finish = (status) => {
      if (finished) return;
      finished = true;
      // Closed at once: EventSource would otherwise reconnect when the stream ends.
      source.close();
      resolve(status);
    };
    const onEvent = (event) => {
      const status = JSON.parse(event.data);
      if (status.progress) onProgress?.(status.progress);
      if (FINAL.includes(status.status)) finish(status);
    };
    source.addEventListener('progress', onEvent);
    for (const name of FINAL) source.addEventListener(name, onEvent);
    source.onerror = () => {
      if (finished) return;
      source.close();
      poll(jobId, onProgress, signal).then(finish, (error) => {
        finished = true;
        reject(error);
      });
    };
    signal?.addEventListener('abort', () => {
      if (!finished) {
        finished = true;
        source.close();
        reject(new Aborted('cancelled'));
      }
    });
  });
}

async function poll(jobId, onProgress, signal) {
  for (;;) {
    const status = await json(`ml/jobs/${encodeURIComponent(jobId)}`, { signal, cache: 'no-store' });
    if (status.progress) onProgress?.(status.progress);
    if (FINAL.includes(status.status)) return status;
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** DELETE ml/jobs/{id}: cancels a running job (answers once it has stopped). */
export function cancelJob(jobId) {
  return fetch(`ml/jobs/${encodeURIComponent(jobId)}`, { method: 'DELETE' }).catch(() => {});
}
