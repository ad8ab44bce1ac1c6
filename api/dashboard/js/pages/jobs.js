// The jobs list: state, model, solver, NFE, phase, live progress, what a finished job serves and
// its gain over the best heuristic, losses, age, worker.

import { api, withQuery } from "../api.js";
import { fill, h } from "../dom.js";
import {
  fmtDuration, fmtGain, fmtLoss, gainClass, gainTitle, guardOff, jobValLoss, phaseLabel, progressLabel, progressPercent,
  qualityGain, secondsSince, servedName,
} from "../format.js";
import { Poller } from "../poll.js";

const COLUMNS = ["job", "state", "model", "solver", "NFE", "phase", "progress", "served", "gain", "val loss", "best", "age", "worker"];

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

/** A mark for a version published with the test guard off (``guard_z`` 0): LD3 served on any mean gain, however noisy. */
export const guardOffBadge = () => h("span", {
  class: "badge guard-off", title: "published with guard_z = 0: LD3 is served whenever its mean test loss is below the best heuristic's, with no margin for noise",
}, "guard off");

/** The served and gain cells of a job: what its version serves and the change of the test loss against the best heuristic. */
function servedCells(job) {
  const pub = job.published;
  if (!pub) return [h("td", { class: "served" }, "—"), h("td", { class: "num gain" }, "—")];
  const g = qualityGain(pub.quality);
  const served = h("td", { class: "served" }, servedName(pub.source), guardOff(job.options) ? [" ", guardOffBadge()] : null);
  const text = !g ? "—" : g.served === "ld3" ? fmtGain(g) : "0 %";  // a served heuristic is the best one: no change
  return [served, h("td", { class: `num gain ${gainClass(g)}`, title: gainTitle(g) }, text)];
}

function row(job, now) {
  return h("tr", { "data-job-id": job.id, "data-state": job.state },
    h("td", {}, h("a", { href: `#/jobs/${encodeURIComponent(job.id)}`, class: "mono" }, job.id.slice(0, 8))),
    h("td", {}, stateBadge(job)),
    h("td", {}, job.model), h("td", {}, job.solver), h("td", { class: "num" }, job.nfe),
    h("td", { class: "phase" }, phaseLabel(job)),
    h("td", { class: "progress-cell" }, progressBar(job)),
    servedCells(job),
    h("td", { class: "num val-loss" }, fmtLoss(jobValLoss(job))),
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
    h("thead", {}, h("tr", {}, COLUMNS.map((c) => h("th", {}, c)))), body);
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
      : h("tr", {}, h("td", { colspan: COLUMNS.length, class: "muted" }, "No jobs match.")));
    count.textContent = `${page.data.length} job${page.data.length === 1 ? "" : "s"}`;
  }, ctx.setStatus);
  ctx.setPoller(poller);
  poller.start();
  return () => poller.stop();
}
