// What the step-time plot shows: each schedule's N+1 step sigmas as log sigma per step.
//
// Sigmas are the version's ``sigmas`` (the k-diffusion sigma sigma_t/alpha_t; for rectified
// flow sigma_t = t). Heuristics: the step sigmas the version's job stored (``step_sigmas``,
// {name: [N+1 sigmas]}, "ld3" the learned schedule; ``/dashboard/api/versions/{id}``); the best
// heuristic on the test pairs, the one the guard compared LD3 against, is labelled so. Without
// stored ones, the two heuristics defined by the end points alone are drawn from the served
// schedule's end points: logsnr (uniform in lambda = -log sigma) and edm (uniform in
// sigma^(1/7), Karras et al. 2022, eq. 5).

const RHO = 7;

/** logsnr or edm step sigmas from ``sMax`` down to ``sMin`` in ``n`` steps (flow: sigma_t in (0, 1)). */
export function endpointHeuristic(name, sMax, sMin, n, { flow = false } = {}) {
  const toEdm = (s) => (flow ? s / (1 - s) : s);
  const fromEdm = (s) => (flow ? s / (1 + s) : s);
  const a = toEdm(sMax), b = toEdm(sMin);
  const out = [];
  for (let i = 0; i <= n; i++) {
    const r = i / n;
    let s;
    if (name === "logsnr") s = Math.exp(Math.log(a) + r * (Math.log(b) - Math.log(a)));
    else if (name === "edm") s = (a ** (1 / RHO) + r * (b ** (1 / RHO) - a ** (1 / RHO))) ** RHO;
    else throw new Error(`heuristic ${name}: needs the schedule, not only its end points`);
    out.push(fromEdm(s));
  }
  out[0] = sMax;
  out[n] = sMin;
  return out;
}

const logs = (sigmas) => sigmas.map((s) => (Number.isFinite(s) && s > 0 ? Math.log(s) : null));

/** The heuristic the guard compared LD3 against (best on the test pairs), from a version's ``quality``. */
export const bestHeuristic = (version) => ((version.quality || {}).best_heuristic || {}).name || null;

/**
 * ``{series: [{name, xs, ys}], yLabel, xLabel, note}`` for a version as ``/dashboard/api/versions/{id}``
 * returns it. ``heuristics``: "all" the job scored, or "best" (the served schedule, the learned one
 * and the best heuristic: the comparison the guard made).
 */
export function scheduleSeries(version, { heuristics = "all" } = {}) {
  const flow = ((version.schedule_config || {}).name || "") === "flow";
  const yLabel = flow ? "log σ_t  (rectified flow, σ_t = t)" : "log σ  (σ = σ_t / α_t)";
  const best = bestHeuristic(version);
  const label = (name) => (name === "ld3" ? "LD3 (learned)" : name === best ? `${name} (best heuristic)` : name);
  const stored = version.step_sigmas && typeof version.step_sigmas === "object" && Object.values(version.step_sigmas).every(Array.isArray)
    ? version.step_sigmas : null;
  const named = [];
  const notes = [];
  if (stored) {
    const keep = (name) => heuristics === "all" || name === "ld3" || name === best || name === version.source;
    for (const [name, sig] of Object.entries(stored)) if (keep(name)) named.push([label(name), sig]);
    if (best && !(best in stored)) notes.push(`the best heuristic (${best}) has no stored step times`);
  } else {
    const sig = version.sigmas || [];
    const src = version.source;
    named.push([src === "ld3" ? label("ld3") : `${src} (served${src === best ? ", best heuristic" : ""})`, sig]);
    if (sig.length >= 2) {
      const n = sig.length - 1;
      for (const h of ["logsnr", "edm"]) {
        if (h !== version.source) named.push([label(h), endpointHeuristic(h, sig[0], sig[n], n, { flow })]);
      }
      notes.push("heuristics logsnr and edm drawn from the end points (the worker stored no heuristic step times)");
      if (best && !["logsnr", "edm", version.source].includes(best)) notes.push(`the best heuristic (${best}) cannot be drawn from them`);
    }
  }
  const series = named.map(([name, sig]) => ({ name, xs: sig.map((_, i) => i), ys: logs(sig) }));
  return { series, yLabel, xLabel: "step i (0 = start, N = end)", note: notes.join("; ") };
}

/** Loss curves from a job's ``curve`` points: training, validation hard and soft, by iteration. */
export function lossSeries(curve) {
  const pts = Array.isArray(curve) ? curve : [];
  const pick = (field) => ({ xs: pts.map((p) => p.iteration), ys: pts.map((p) => (Number.isFinite(p[field]) ? p[field] : null)) });
  return [
    { name: "training", ...pick("train") },
    { name: "validation (hard)", ...pick("val_hard") },
    { name: "validation (soft)", dash: true, ...pick("val_soft") },
  ].filter((s) => s.ys.some((y) => y !== null));
}
