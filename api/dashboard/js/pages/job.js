// One job: progress, loss curves, learned step times next to the heuristics, quality, sample
// grid, events, error reason, cancel (jobs:submit scope), links to the resulting schedule.

import { api, schedulePath, withQuery } from "../api.js";
import { drawChart } from "../chart.js";
import { fill, h } from "../dom.js";
import { can, fmtDuration, fmtLoss, guardOff, jobValLoss, phaseLabel, secondsSince, servedSummary } from "../format.js";
import { Poller } from "../poll.js";
import { lossSeries, scheduleSeries } from "../schedule_plot.js";
import { guardOffBadge, progressBar, stateBadge } from "./jobs.js";

const ACTIVE = ["queued", "running"];
const fmtTime = (iso) => (iso ? new Date(iso).toLocaleString() : "—");

function summary(job) {
  const now = Date.now();
  const ran = job.started_at ? ((job.finished_at ? Date.parse(job.finished_at) : now) - Date.parse(job.started_at)) / 1000 : null;
  const items = [
    ["schedule key", `${job.model} / ${job.solver} / NFE ${job.nfe}`],
    ["phase", phaseLabel(job)],
    ["progress", progressBar(job)],
    ...outcome(job),
    ["worker", job.worker || "—"],
    ["attempts", job.attempts],
    ["created", `${fmtTime(job.created_at)} (${fmtDuration(secondsSince(job.created_at, now))} ago)`],
    ["started", fmtTime(job.started_at)],
    ["finished", fmtTime(job.finished_at)],
    ["run time", fmtDuration(ran)],
  ];
  return h("dl", { class: "summary" }, items.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

/** The summary's loss rows, and what a succeeded job serves: no stale training figure once it ended. */
function outcome(job) {
  const best = fmtLoss(job.progress.loss_best);
  if (job.state === "running") return [["validation loss (current / best)", `${fmtLoss(jobValLoss(job))} / ${best}`]];
  const pub = job.published;
  if (job.state !== "succeeded" || !pub) return [["best validation loss in training", best]];
  return [
    ["served", h("span", { id: "job-served" }, `version ${pub.version} serves ${servedSummary(pub.source, pub.quality)}`,
      guardOff(job.options) ? [" ", guardOffBadge()] : null)],
    ["validation loss (served / best in training)", `${fmtLoss(jobValLoss(job))} / ${best}`],
  ];
}

function eventsTable(events) {
  return h("table", { class: "events", id: "events" },
    h("thead", {}, h("tr", {}, h("th", {}, "at"), h("th", {}, "event"), h("th", {}, "message"))),
    h("tbody", {}, (events || []).map((e) => h("tr", { "data-kind": e.kind },
      h("td", { class: "small" }, fmtTime(e.at)), h("td", {}, e.kind),
      h("td", {}, e.message, e.data && e.data.traceback ? h("details", {}, h("summary", {}, "traceback"), h("pre", {}, e.data.traceback)) : null)))));
}

function qualityTable(quality) {
  const q = quality || {};
  const rows = [];
  if (q.learned) rows.push(["LD3 (learned)", q.learned]);
  for (const [name, v] of Object.entries(q.heuristics || {})) rows.push([name, v]);
  const best = (q.best_heuristic || {}).name;
  return h("table", { class: "quality" },
    h("thead", {}, h("tr", {}, h("th", {}, "schedule"), h("th", {}, `test ${q.metric || "loss"} (mean ± sem)`))),
    h("tbody", {}, rows.map(([name, v]) => h("tr", { class: name === best ? "best" : name === q.source ? "served" : "" },
      h("td", {}, name, name === best ? " (best heuristic)" : ""),
      h("td", { class: "num" }, `${fmtLoss(v && v.mean)} ± ${fmtLoss(v && v.sem)}`)))));
}

async function scheduleSection(el, job) {
  const v = await api(`/dashboard/api/versions/${job.schedule_version_id}`);
  const plot = scheduleSeries(v);
  const canvas = h("canvas", { id: "schedule-chart", class: "chart", "aria-label": "step times" });
  const apiPath = withQuery(schedulePath(v.model, v.solver, v.nfe), { version: v.version, guidance: v.guidance });
  const link = withQuery("#/schedules", { model: v.model, solver: v.solver, nfe: v.nfe, guidance: v.guidance });
  const samples = h("div", { id: "samples" });
  fill(el,
    h("h2", {}, "Step times"),
    h("p", {}, h("a", { href: link, id: "schedule-link" }, `schedule ${v.model} / ${v.solver} / NFE ${v.nfe}, version ${v.version}`),
      v.active ? h("span", { class: "badge succeeded" }, "active") : null,
      " · API: ", h("code", {}, `GET ${apiPath}`)),
    h("p", { class: "muted" }, `${v.time_space}; serves ${servedSummary(v.source, v.quality)}`, plot.note ? ` — ${plot.note}` : ""),
    canvas,
    h("h2", {}, "Quality on held-out pairs"),
    (v.quality && v.quality.message) ? h("p", {}, v.quality.message) : null,
    qualityTable(v.quality),
    h("h2", {}, "Samples (same seeds)"), samples);
  drawChart(canvas, { series: plot.series, xLabel: plot.xLabel, yLabel: plot.yLabel });
  if (!v.has_samples) {
    fill(samples, h("p", { class: "muted" }, "No sample grid for this version (the model's samples are not images)."));
    return;
  }
  const blob = await api(`${schedulePath(v.model, v.solver, v.nfe)}/versions/${v.version}/samples.png${v.guidance === null ? "" : `?guidance=${v.guidance}`}`, { as: "blob" });
  fill(samples, h("figure", {}, h("img", { id: "samples-img", src: URL.createObjectURL(blob), alt: "sample grid" }),
    h("figcaption", {}, `top: ${(v.quality.best_heuristic || {}).name || "best heuristic"}; bottom: LD3 (learned)`)));
}

export function renderJob(root, jobId, ctx) {
  const head = h("div", { class: "toolbar" });
  const info = h("div", { id: "job-summary" });
  const errorBox = h("div", { id: "job-error" });
  const lossCanvas = h("canvas", { id: "loss-chart", class: "chart", "aria-label": "loss curves" });
  const schedule = h("section", { class: "card", id: "schedule-section" }, h("p", { class: "muted" }, "The schedule appears when the job succeeds."));
  const events = h("div", {});
  const options = h("div", {});
  fill(root,
    h("p", {}, h("a", { href: "#/jobs" }, "← all jobs")),
    h("section", { class: "card" }, head, info, errorBox),
    h("section", { class: "card" }, h("h2", {}, "Loss curves"), lossCanvas),
    schedule,
    h("section", { class: "card" }, h("h2", {}, "Events"), events, options));
  let drawnPoints = -1;
  let scheduleLoaded = false;

  const cancel = async () => {
    if (!window.confirm(`Cancel job ${jobId.slice(0, 8)}?`)) return;
    try {
      await api(`/jobs/${encodeURIComponent(jobId)}/cancel`, { method: "POST" });
    } catch (e) {
      ctx.setStatus({ ok: false, error: e, nextMs: 0 });
    }
    poller.now();
  };

  const poller = new Poller(async () => {
    const job = await api(`/jobs/${encodeURIComponent(jobId)}`);
    const cancellable = ACTIVE.includes(job.state) && !job.cancel_requested && can(ctx.me, "jobs:submit");
    fill(head, h("h1", {}, `Job ${job.id.slice(0, 8)}`), stateBadge(job),
      cancellable ? h("button", { id: "cancel-job", type: "button", class: "danger", onclick: cancel }, "Cancel job") : null,
      job.cancel_requested && ACTIVE.includes(job.state) ? h("span", { class: "muted" }, "cancellation requested") : null);
    fill(info, summary(job));
    fill(errorBox, job.error ? h("div", { class: "error-box" }, h("strong", {}, "Error: "), job.error) : null,
      job.result && job.result.message ? h("p", {}, job.result.message) : null);
    if (job.curve.length !== drawnPoints) {
      drawnPoints = job.curve.length;
      drawChart(lossCanvas, { series: lossSeries(job.curve), xLabel: "iteration", yLabel: `${job.options.loss || "loss"}`, logY: true });
    }
    fill(events, eventsTable(job.events));
    if (!options.firstChild) fill(options, h("details", {}, h("summary", {}, "options"), h("pre", {}, JSON.stringify(job.options, null, 2))));
    if (job.schedule_version_id && !scheduleLoaded) {
      await scheduleSection(schedule, job);
      scheduleLoaded = true;
    } else if (!ACTIVE.includes(job.state) && !job.schedule_version_id) {
      fill(schedule, h("p", { class: "muted" }, `No schedule: the job ${job.state}.`));
    }
    if (!ACTIVE.includes(job.state) && (scheduleLoaded || !job.schedule_version_id)) poller.finish();
  }, ctx.setStatus);
  ctx.setPoller(poller);
  poller.start();
  return () => poller.stop();
}
