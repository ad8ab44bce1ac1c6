// The dashboard shell: the API key (asked for once, kept in sessionStorage), the header, and
// the hash routes #/jobs, #/jobs/<id>, #/schedules.

import { api, ApiError, keyStore } from "./api.js";
import { fill, h } from "./dom.js";
import { can, fmtDuration, parseRoute } from "./format.js";
import { pollMs, setPollMs } from "./poll.js";
import { renderJobs } from "./pages/jobs.js";
import { renderJob } from "./pages/job.js";
import { renderSchedules } from "./pages/schedules.js";

const view = document.getElementById("view");
const statusEl = document.getElementById("status");
let me = null;
let cleanup = null;
let current = null; // the poller of the page on screen

function setStatus({ ok, error, nextMs }) {
  statusEl.classList.toggle("error", !ok);
  if (ok) {
    statusEl.textContent = `updated ${new Date().toLocaleTimeString()}`;
  } else {
    const retry = nextMs > 0 ? `; retrying in ${fmtDuration(nextMs / 1000)}` : "";
    statusEl.textContent = `API error: ${error && error.message}${retry}`;
  }
  if (!ok && error instanceof ApiError && error.status === 401) signOut("The key was refused (unknown or revoked).");
}

function keyForm(message) {
  const input = h("input", { type: "password", id: "api-key", autocomplete: "off", placeholder: "ld3_…", size: 48, "aria-label": "API key" });
  const form = h("form", { class: "card key-form", id: "key-form" },
    h("h1", {}, "API key"),
    h("p", {}, "Enter an API key of this service. It is kept in this tab only (session storage) and sent in the X-API-Key header."),
    message ? h("p", { class: "error" }, message) : null,
    input, " ", h("button", { type: "submit" }, "Use key"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const key = input.value.trim();
    if (!key) return;
    keyStore.set(key);
    await signIn();
  });
  fill(view, form);
  input.focus();
}

function signOut(message) {
  keyStore.clear();
  me = null;
  document.getElementById("whoami").textContent = "";
  document.getElementById("forget-key").hidden = true;
  stopPage();
  keyForm(message);
}

async function signIn() {
  try {
    me = await api("/auth/me");
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) { signOut("The key was refused (unknown or revoked)."); return; }
    fill(view, h("p", { class: "error" }, `Cannot reach the service: ${e.message}`));
    return;
  }
  document.getElementById("whoami").textContent = `${me.name} · ${me.scopes.join(", ")}`;
  document.getElementById("forget-key").hidden = !keyStore.get();
  if (!can(me, "schedules:read")) {
    fill(view, h("p", { class: "error" }, `The key ${me.name} lacks the scope schedules:read, which every page of the dashboard needs.`));
    return;
  }
  route();
}

function stopPage() {
  if (cleanup) cleanup();
  cleanup = null;
  current = null;
}

function route() {
  if (!me) return;
  stopPage();
  const { path, params } = parseRoute(location.hash);
  for (const a of document.querySelectorAll("[data-nav]")) a.classList.toggle("here", a.dataset.nav === path[0]);
  const ctx = { me, params, setStatus, setPoller: (p) => { current = p; } };
  view.replaceChildren();
  if (path[0] === "jobs" && path[1]) cleanup = renderJob(view, path[1], ctx);
  else if (path[0] === "schedules") cleanup = renderSchedules(view, ctx);
  else cleanup = renderJobs(view, ctx);
}

async function main() {
  const select = document.getElementById("poll-ms");
  const ms = String(pollMs());
  if (![...select.options].some((o) => o.value === ms)) select.append(h("option", { value: ms }, `${ms} ms`));
  select.value = ms;
  select.addEventListener("change", () => { setPollMs(Number(select.value)); if (current) current.now(); });
  document.getElementById("forget-key").addEventListener("click", () => signOut());
  window.addEventListener("hashchange", route);
  let config;
  try {
    config = await api("/dashboard/api/config");
  } catch (e) {
    fill(view, h("p", { class: "error" }, `Cannot reach the service: ${e.message}`));
    return;
  }
  if (config.auth_required && !keyStore.get()) keyForm();
  else await signIn();
}

main();
