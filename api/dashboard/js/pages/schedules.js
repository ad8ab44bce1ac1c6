// Schedules: per model a solver x NFE table of the active versions and their quality gain over
// the best heuristic; for a chosen key, its version history with promote / roll back (admin).

import { api, schedulePath, withQuery } from "../api.js";
import { drawChart } from "../chart.js";
import { fill, h } from "../dom.js";
import { can, fmtGain, fmtLoss, gainClass, gainTitle, guardOff, qualityGain, servedSummary } from "../format.js";
import { Poller } from "../poll.js";
import { scheduleSeries } from "../schedule_plot.js";
import { guardOffBadge } from "./jobs.js";

const unique = (xs) => [...new Set(xs)];
const keyLink = (a) => withQuery("#/schedules", { model: a.model, solver: a.solver, nfe: a.nfe, guidance: a.guidance });

/** One model's table: a row per solver, a column per NFE, a cell per active schedule. */
function modelTable(model, actives) {
  const solvers = unique(actives.map((a) => a.solver)).sort();
  const nfes = unique(actives.map((a) => a.nfe)).sort((a, b) => a - b);
  const cell = (solver, nfe) => {
    const here = actives.filter((a) => a.solver === solver && a.nfe === nfe);
    if (!here.length) return h("td", { class: "muted" }, "—");
    return h("td", {}, here.map((a) => {
      const g = qualityGain(a.quality);
      return h("a", { href: keyLink(a), class: `cell ${gainClass(g)}`, "data-key": `${a.model}/${a.solver}/${a.nfe}`, title: gainTitle(g) },
        a.guidance === null ? "" : `w=${a.guidance} `, `v${a.version} `, h("strong", {}, fmtGain(g)),
        guardOff(a.config) ? [" ", guardOffBadge()] : null);
    }));
  };
  return h("section", { class: "card model", "data-model": model },
    h("h2", {}, model),
    actives.length ? h("table", { class: "grid" },
      h("thead", {}, h("tr", {}, h("th", {}, "solver \\ NFE"), nfes.map((n) => h("th", { class: "num" }, n)))),
      h("tbody", {}, solvers.map((s) => h("tr", {}, h("th", {}, s), nfes.map((n) => cell(s, n))))))
      : h("p", { class: "muted" }, "No schedules yet."));
}

function historyTable(versions, ctx, onPromote) {
  const admin = can(ctx.me, "admin");
  const active = versions.find((v) => v.active);
  return h("table", { class: "history", id: "history" },
    h("thead", {}, h("tr", {}, ["version", "created", "source", "val loss", "test loss vs best heuristic", "job", "", ""].map((c) => h("th", {}, c)))),
    h("tbody", {}, versions.slice().reverse().map((v) => {
      const g = qualityGain(v.quality);
      const action = !admin || v.active ? null : h("button", {
        type: "button", class: "promote", "data-version": v.version, onclick: () => onPromote(v),
      }, active && v.version < active.version ? "Roll back to this" : "Promote");
      return h("tr", { "data-version": v.version, class: v.active ? "active" : "" },
        h("td", {}, `v${v.version}`), h("td", { class: "small" }, new Date(v.created_at).toLocaleString()),
        h("td", { class: "source" }, v.source, guardOff(v.config) ? [" ", guardOffBadge()] : null),
        h("td", { class: "num" }, fmtLoss(v.val_loss)),
        h("td", { class: gainClass(g) }, fmtGain(g)),
        h("td", {}, v.job_id ? h("a", { href: `#/jobs/${encodeURIComponent(v.job_id)}`, class: "mono" }, v.job_id.slice(0, 8)) : "—"),
        h("td", {}, v.active ? h("span", { class: "badge succeeded" }, "active") : ""),
        h("td", {}, action));
    })));
}

/** Above the versions chart: what the version serves, against which heuristic, whether the guard was on. */
function versionNote(v, plot) {
  return h("p", { id: "version-note", class: "muted" }, `serves ${servedSummary(v.source, v.quality)}`,
    guardOff(v.config) ? [" · ", guardOffBadge(), " the guard was overridden (guard_z = 0)"] : null,
    plot.note ? ` — ${plot.note}` : "");
}

async function keyDetail(el, key, ctx, refresh) {
  const path = schedulePath(key.model, key.solver, key.nfe);
  const query = key.guidance ? { guidance: key.guidance } : {};
  const versions = await api(withQuery(`${path}/versions`, query));
  const promote = async (v) => {
    const verb = versions.find((x) => x.active && x.version > v.version) ? "Roll back" : "Promote";
    if (!window.confirm(`${verb} ${key.model}/${key.solver}/${key.nfe} to version ${v.version}?`)) return;
    try {
      await api(withQuery(`${path}/versions/${v.version}/promote`, query), { method: "POST" });
    } catch (e) {
      ctx.setStatus({ ok: false, error: e, nextMs: 0 });
    }
    refresh();
  };
  const active = versions.find((v) => v.active) || versions[versions.length - 1];
  const detail = await api(`/dashboard/api/versions/${active.id}`);
  const canvas = h("canvas", { id: "schedule-chart", class: "chart", "aria-label": "step times" });
  const samples = h("div", { id: "samples" });
  const plot = scheduleSeries(detail, { heuristics: "best" });
  fill(el,
    h("h2", {}, `${key.model} / ${key.solver} / NFE ${key.nfe}${key.guidance ? ` / guidance ${key.guidance}` : ""}`),
    h("p", {}, "API: ", h("code", {}, `GET ${withQuery(path, query)}`), can(ctx.me, "admin") ? "" : h("span", { class: "muted" }, " · promote and roll back need an admin key")),
    historyTable(versions, ctx, promote),
    h("h2", {}, `Step times of version ${detail.version}${detail.active ? " (active)" : ""}`),
    versionNote(detail, plot), canvas, samples);
  drawChart(canvas, { series: plot.series, xLabel: plot.xLabel, yLabel: plot.yLabel });
  if (detail.has_samples) {
    const blob = await api(`${path}/versions/${detail.version}/samples.png${key.guidance ? `?guidance=${key.guidance}` : ""}`, { as: "blob" });
    fill(samples, h("figure", {}, h("img", { id: "samples-img", src: URL.createObjectURL(blob), alt: "sample grid" }),
      h("figcaption", {}, `top: ${(detail.quality.best_heuristic || {}).name || "best heuristic"}; bottom: LD3 (learned), same seeds`)));
  }
}

export function renderSchedules(root, ctx) {
  const { model, solver, nfe, guidance } = ctx.params;
  const tables = h("div", { id: "schedule-tables" });
  const detail = h("section", { class: "card", id: "schedule-detail" });
  fill(root, h("section", { class: "card" }, h("h1", {}, "Schedules"),
    h("p", { class: "muted" }, "Active version per model, solver and NFE, with the change of the test loss against the best heuristic (negative = LD3 better; \"= name\": the guard serves that heuristic; \"guard off\": published with guard_z = 0, no margin for noise). Click a cell for its versions.")),
  tables, model && solver && nfe ? detail : null);
  let lastSeen = null;
  const poller = new Poller(async () => {
    const [models, actives] = await Promise.all([api("/models"), api("/dashboard/api/schedules")]);
    const keys = unique([...models.map((m) => m.key), ...actives.map((a) => a.model)]).sort();
    fill(tables, keys.map((m) => modelTable(m, actives.filter((a) => a.model === m))));
    const seen = JSON.stringify(actives.map((a) => a.version_id));
    if (model && solver && nfe && seen !== lastSeen) {
      await keyDetail(detail, { model, solver, nfe: Number(nfe), guidance }, ctx, () => { lastSeen = null; poller.now(); });
      lastSeen = seen;
    }
  }, ctx.setStatus);
  ctx.setPoller(poller);
  poller.start();
  return () => poller.stop();
}
