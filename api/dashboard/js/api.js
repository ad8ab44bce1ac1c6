// Calls to the service with the operator's key: kept in this tab's sessionStorage, sent as
// the X-API-Key header, never put in a URL.

const KEY_ITEM = "ld3.apiKey";

export const keyStore = {
  get: () => sessionStorage.getItem(KEY_ITEM),
  set: (key) => sessionStorage.setItem(KEY_ITEM, key),
  clear: () => sessionStorage.removeItem(KEY_ITEM),
};

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** The readable text of an error body: ``{"detail": "..."}`` or ``{"detail": [{"msg": ...}]}``. */
export function detailText(body, status) {
  const d = body && body.detail;
  if (typeof d === "string") return d;
  if (Array.isArray(d)) return d.map((e) => (e && e.msg) || JSON.stringify(e)).join("; ");
  return `HTTP ${status}`;
}

/** ``api(path, {method, body, as})``: the parsed JSON (or a Blob with ``as: "blob"``); throws ApiError. */
export async function api(path, { method = "GET", body, as = "json" } = {}) {
  const headers = { Accept: as === "blob" ? "image/png" : "application/json" };
  const key = keyStore.get();
  if (key) headers["X-API-Key"] = key;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, {
    method, headers, cache: "no-store", credentials: "omit",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!res.ok) {
    let parsed = null;
    try { parsed = await res.json(); } catch { /* not JSON */ }
    throw new ApiError(res.status, detailText(parsed, res.status));
  }
  return as === "blob" ? res.blob() : res.json();
}

/** A path with a query string of the defined values: ``withQuery("/jobs", {state: "running"})``. */
export function withQuery(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

/** The API path of a schedule key (model/solver/nfe), segments escaped. */
export function schedulePath(model, solver, nfe) {
  return `/schedules/${encodeURIComponent(model)}/${encodeURIComponent(solver)}/${encodeURIComponent(nfe)}`;
}
