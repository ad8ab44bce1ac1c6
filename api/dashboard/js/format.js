// Pure helpers of the pages: formatting, progress, quality gain, polling delays. No DOM here.

export const POLL = { defaultMs: 2000, minMs: 200, maxMs: 60000, hiddenFactor: 10 };

/** "12 s", "3 m 05 s", "1 h 02 m", "2 d 3 h"; "—" for a missing or negative value. */
export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds) || seconds < 0) return "—";
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} m ${String(s % 60).padStart(2, "0")} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} m`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

/** Seconds from an ISO timestamp to ``nowMs`` (null if it does not parse). */
export function secondsSince(iso, nowMs) {
  const t = Date.parse(iso);
  return Number.isFinite(t) ? Math.max(0, (nowMs - t) / 1000) : null;
}

/** A loss with 4 significant digits, "—" when missing. */
export function fmtLoss(x) {
  return x === null || x === undefined || !Number.isFinite(x) ? "—" : Number(x).toPrecision(4);
}

/** Percent done of the job's current phase (100 once it succeeded), clamped to [0, 100]. */
export function progressPercent(job) {
  if (job.state === "succeeded") return 100;
  const p = job.progress || {};
  if (!(p.total > 0)) return 0;
  return Math.min(100, Math.max(0, (100 * p.done) / p.total));
}

/** "training 12/20 · ETA 8 s" and the like, for the bar's label. */
export function progressLabel(job) {
  const p = job.progress || {};
  if (job.state === "queued") return "queued";
  if (job.state !== "running") return job.state;
  const count = p.total > 0 ? `${p.done}/${p.total}` : "";
  const eta = p.eta_s !== null && p.eta_s !== undefined ? ` · ETA ${fmtDuration(p.eta_s)}` : "";
  return `${p.phase || "starting"} ${count}${eta}`.trim();
}

/**
 * The phase column: the phase while the job runs, where a failed or cancelled one stopped, "—"
 * for a queued or succeeded job (its stored phase is the last it was in, not a state).
 */
export function phaseLabel(job) {
  const phase = (job.progress || {}).phase;
  if (job.state === "running") return phase || "starting";
  if ((job.state === "failed" || job.state === "cancelled") && phase) return `stopped in ${phase}`;
  return "—";
}

/**
 * The validation loss to show for a job: the current one while it runs; once it succeeded, that of
 * the schedule it published (what is served, ``published.val_loss``), not the last one measured
 * in training; none for a queued, failed or cancelled job.
 */
export function jobValLoss(job) {
  if (job.state === "running") return (job.progress || {}).loss_current;
  if (job.state === "succeeded" && job.published) return job.published.val_loss;
  return null;
}

/** What a version (or a job's ``published``) serves: "LD3" or the heuristic's name. */
export function servedName(source) {
  if (!source) return "—";
  return source === "ld3" ? "LD3" : source;
}

/**
 * What a version serves and how it compares, from its ``source`` and ``quality``: "LD3 (learned),
 * test loss −35.7 % against the best heuristic on the test pairs, logsnr", or "time_uniform, the
 * best heuristic on the test pairs: LD3 did not beat it".
 */
export function servedSummary(source, quality) {
  const g = qualityGain(quality);
  if (!g) return servedName(source);
  if (g.served !== "ld3") return `${g.served}, the best heuristic on the test pairs: LD3 did not beat it`;
  return `LD3 (learned), test loss ${fmtGain(g)} against the best heuristic on the test pairs, ${g.best}`;
}

/** Whether a configuration (a version's ``config``, a job's ``options``) switched the test guard off (``guard_z`` 0). */
export function guardOff(config) {
  return !!config && config.guard_z === 0;
}

/**
 * The served schedule's gain over the best heuristic on the held-out test pairs, from a
 * version's ``quality``: ``{served, best, relative, diff, sem, metric}``. ``relative`` is the
 * fraction of the best heuristic's loss removed (0 when the guard served the heuristic itself).
 * Null when the quality record lacks the figures.
 */
export function qualityGain(quality) {
  const q = quality || {};
  const best = q.best_heuristic || {};
  const learned = q.learned || {};
  if (!Number.isFinite(best.mean) || !Number.isFinite(learned.mean)) return null;
  const served = q.source || "ld3";
  const diff = q.learned_minus_best && Number.isFinite(q.learned_minus_best.mean)
    ? q.learned_minus_best.mean : learned.mean - best.mean;
  const sem = q.learned_minus_best ? q.learned_minus_best.sem : null;
  const relative = served !== "ld3" || !(best.mean > 0) ? 0 : -diff / best.mean;
  return { served, best: best.name || "?", relative, diff, sem, metric: q.metric || "loss" };
}

/** The CSS class of a gain: better (LD3 served and ahead), worse, neutral (a heuristic served). */
export function gainClass(g) {
  if (!g) return "";
  if (g.served !== "ld3") return "neutral";
  return g.relative > 0 ? "better" : "worse";
}

/** The tooltip of a gain: the paired test-loss difference and whom it is against. */
export function gainTitle(g) {
  if (!g) return "";
  return `${g.metric}: LD3 ${g.diff >= 0 ? "+" : ""}${fmtLoss(g.diff)} ± ${fmtLoss(g.sem)} vs ${g.best}`;
}

/** "−35.7 %" (loss removed, shown as a loss change), or "= logsnr" when a heuristic is served. */
export function fmtGain(g) {
  if (!g) return "—";
  if (g.served !== "ld3") return `= ${g.served}`;
  const pct = -100 * g.relative;
  const sign = pct < 0 ? "−" : "+";
  return `${sign}${Math.abs(pct).toFixed(1)} %`;
}

/**
 * Milliseconds until the next poll: the chosen interval, stretched ``hiddenFactor`` times while
 * the tab is hidden and doubled per consecutive failure, never above ``POLL.maxMs``. 0 = off.
 */
export function nextDelay(baseMs, { hidden = false, failures = 0 } = {}) {
  if (!(baseMs > 0)) return 0;
  let d = Math.max(POLL.minMs, baseMs);
  if (hidden) d *= POLL.hiddenFactor;
  if (failures > 0) d *= 2 ** Math.min(failures, 10);
  return Math.min(POLL.maxMs, d);
}

/** Whether ``me`` (``/auth/me``) holds ``scope`` (admin holds every scope). */
export function can(me, scope) {
  const s = (me && me.scopes) || [];
  return s.includes(scope) || s.includes("admin");
}

/** The hash route: "#/jobs/abc?x=1" -> {path: ["jobs", "abc"], params: {x: "1"}}. */
export function parseRoute(hash) {
  const raw = (hash || "").replace(/^#\/?/, "");
  const [p, q = ""] = raw.split("?");
  const path = p.split("/").filter(Boolean).map(decodeURIComponent);
  return { path: path.length ? path : ["jobs"], params: Object.fromEntries(new URLSearchParams(q)) };
}
