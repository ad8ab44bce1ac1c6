// The jobs list: state, model, solver, NFE, phase, live progress, losses, age, worker.

import { api, withQuery } from "../api.js";
import { fill, h } from "../dom.js";
import { fmtDuration, fmtLoss, progressLabel, progressPercent, secondsSince } from "../format.js";
import { Poller } from "../poll.js";

const STATES = ["queued", "running", "succeeded", "failed", "cancelled"];

/** A progress bar (``role=progressbar``, ``aria-valuenow`` in percent) with its label. */
export function progressBar(job) {
  const pct = progressPercent(job);
  const fillEl = h("div", { class: "fill" });
  fillEl.style.width = `${pct}%`;
  return h("div", { class: `progress ${job.state}` },
    h("div", { class: "bar", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": pct.toFixed(1) }, fillEl),
    h("span", { class: "label" }, progressLabel(job)));
}

export const stateBadge = (job) => h("span", { class: `badge ${job.state}` }, job.cancel_requested && job.state === "running" ? "cancelling" : job.state);

function row(job, now) {
  return h("tr", { "data-job-id": job.id, "data-state": job.state },
    h("td", {}, h("a", { href: `#/jobs/${encodeURIComponent(job.id)}`, class: "mono" }, job.id.slice(0, 8))),
    h("td", {}, stateBadge(job)),
    h("td", {}, job.model), h("td", {}, job.solver), h("td", { class: "num" }, job.nfe),
    h("td", {}, job.progress.phase || "—"),
    h("td", { class: "progress-cell" }, progressBar(job)),
    h("td", { class: "num" }, fmtLoss(job.progress.loss_current)),
    h("td", { class: "num" }, fmtLoss(job.progress.loss_best)),
    h("td", { class: "num" }, fmtDuration(secondsSince(job.created_at, now))),
    h("td", { class: "mono small" }, job.worker || "—"));
}

export function renderJobs(root, ctx) {
  const state = ctx.params.state || "";
  const model = ctx.params.model || "";
  const go = (patch) => {
    const p = { state, model, ...patch };
    location.hash = withQuery("#/jobs", p);
  };
  const stateSel = h("select", { id: "filter-state", "aria-label": "state", onchange: (e) => go({ state: e.target.value }) },
    h("option", { value: "" }, "all states"), STATES.map((s) => h("option", { value: s }, s)));
  stateSel.value = state;
  const modelSel = h("select", { id: "filter-model", "aria-label": "model", onchange: (e) => go({ model: e.target.value }) },
    h("option", { value: "" }, "all models"), model ? h("option", { value: model }, model) : null);
  modelSel.value = model;
  const count = h("span", { class: "muted" });
  const body = h("tbody", { id: "jobs-body" });
  const table = h("table", { class: "jobs", id: "jobs-table" },
    h("thead", {}, h("tr", {}, ["job", "state", "model", "solver", "NFE", "phase", "progress", "val loss", "best", "age", "worker"]
      .map((c) => h("th", {}, c)))), body);
  fill(root, h("section", { class: "card" },
    h("div", { class: "toolbar" }, h("h1", {}, "Jobs"), h("label", {}, "State ", stateSel), h("label", {}, "Model ", modelSel), count),
    h("div", { class: "table-wrap" }, table)));

  api("/models").then((models) => {
    for (const m of models) if (m.key !== model) modelSel.append(h("option", { value: m.key }, m.key));
    modelSel.value = model;
  }).catch((e) => ctx.setStatus({ ok: false, error: e, nextMs: 0 }));

  const poller = new Poller(async () => {
    const page = await api(withQuery("/jobs", { state, model, limit: 100 }));
    const now = Date.now();
    fill(body, page.data.length ? page.data.map((j) => row(j, now))
      : h("tr", {}, h("td", { colspan: 11, class: "muted" }, "No jobs match.")));
    count.textContent = `${page.data.length} job${page.data.length === 1 ? "" : "s"}`;
  }, ctx.setStatus);
  ctx.setPoller(poller);
  poller.start();
  return () => poller.stop();
}
