// What the step-time plot shows: each schedule's N+1 step sigmas as log sigma per step.
//
// Sigmas are the version's ``sigmas`` (the k-diffusion sigma sigma_t/alpha_t; for rectified
// flow sigma_t = t). Heuristics: the worker's ``result.step_sigmas`` ({name: [N+1 sigmas]},
// "ld3" the learned schedule) when it stored them; otherwise the two heuristics defined by the
// end points alone are drawn from the served schedule's end points: logsnr (uniform in
// lambda = -log sigma) and edm (uniform in sigma^(1/7), Karras et al. 2022, eq. 5).

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

const label = (name) => (name === "ld3" ? "LD3 (learned)" : name);
const logs = (sigmas) => sigmas.map((s) => (Number.isFinite(s) && s > 0 ? Math.log(s) : null));

/**
 * ``{series: [{name, xs, ys}], yLabel, note}`` for a version (``/dashboard/api/versions/{id}``)
 * and its job's ``result`` (may be null).
 */
export function scheduleSeries(version, result) {
  const flow = ((version.schedule_config || {}).name || "") === "flow";
  const yLabel = flow ? "log σ_t  (rectified flow, σ_t = t)" : "log σ  (σ = σ_t / α_t)";
  const stored = result && result.step_sigmas && typeof result.step_sigmas === "object" ? result.step_sigmas : null;
  const named = [];
  let note = "";
  if (stored && Object.values(stored).every(Array.isArray)) {
    for (const [name, sig] of Object.entries(stored)) named.push([label(name), sig]);
    if (version.source !== "ld3") note = `served: ${version.source} (LD3 did not beat it on the test pairs)`;
  } else {
    const sig = version.sigmas || [];
    named.push([version.source === "ld3" ? label("ld3") : `${version.source} (served)`, sig]);
    if (sig.length >= 2) {
      const n = sig.length - 1;
      for (const h of ["logsnr", "edm"]) {
        if (h !== version.source) named.push([h, endpointHeuristic(h, sig[0], sig[n], n, { flow })]);
      }
      note = "heuristics logsnr and edm drawn from the end points (the worker stored no heuristic step times)";
    }
  }
  const series = named.map(([name, sig]) => ({ name, xs: sig.map((_, i) => i), ys: logs(sig) }));
  return { series, yLabel, xLabel: "step i (0 = start, N = end)", note };
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
