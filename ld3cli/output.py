"""What the commands print for people: schedules, quality tables, jobs."""

from __future__ import annotations

from typing import Any, Sequence


def _fmt_times(xs: Sequence[float]) -> str:
    return ", ".join(f"{x:.6g}" for x in xs)


def format_quality(quality: dict[str, Any]) -> str:
    """The quality table of a schedule version: the learned schedule and every heuristic on the test pairs."""
    rows = [("ld3", quality.get("learned") or {})] + sorted(
        (quality.get("heuristics") or {}).items(), key=lambda kv: kv[1].get("mean") if kv[1].get("mean") is not None else float("inf"))
    metric = quality.get("metric", "loss")
    source = quality.get("source")
    lines = [f"{'schedule':<16}{'test ' + metric:>14}{'± sem':>12}"]
    for name, r in rows:
        mean, sem = r.get("mean"), r.get("sem")
        mark = " <- served" if name == source else ""
        lines.append(f"{name:<16}{mean if mean is None else format(mean, '.5g'):>14}{sem if sem is None else format(sem, '.3g'):>12}{mark}")
    d = quality.get("learned_minus_best")
    if d:
        lines.append(f"learned - best heuristic ({(quality.get('best_heuristic') or {}).get('name')}): "
                     f"{d.get('mean'):.4g} ± {d.get('sem'):.2g} (paired, n = {quality.get('n_test')})")
    return "\n".join(lines)


def format_schedule(sched: dict[str, Any]) -> str:
    """A ``GET /schedules`` response (format raw) for people: the times, the provenance, the quality."""
    p = sched["payload"]
    lines = [f"schedule {p['model']}/{p['solver']}/NFE {p['nfe']} version {p['version']} (source: {p['source']}; {p['time_space']})",
             f"  t_steps: {_fmt_times(p['t_steps'])}",
             f"  t_model: {_fmt_times(p['t_model'])}",
             f"  sigmas:  {_fmt_times(p['sigmas'])}",
             f"  model timesteps: {_fmt_times(p['model_timesteps'])}",
             f"  provenance: model sha256 {str(p.get('model_sha256'))[:12]}..., seed {p['seed']}, code {p['code_version']}, job {p.get('job_id')}"]
    if p.get("quality"):
        if p["quality"].get("message"):
            lines += ["", p["quality"]["message"]]
        lines += ["", format_quality(p["quality"])]
    return "\n".join(lines)


def format_job(job: dict[str, Any]) -> str:
    """One job's state for ``ld3 status JOB``."""
    pr = job["progress"]
    lines = [f"job {job['id']}: {job['model']}/{job['solver']}/NFE {job['nfe']}  state {job['state']}"
             + (" (cancel requested)" if job.get("cancel_requested") and job["state"] == "running" else "")]
    if job["state"] == "running" or pr.get("phase"):
        eta = f", ETA {pr['eta_s']:.0f} s" if pr.get("eta_s") is not None else ""
        best = f", best val {pr['loss_best']:.4g}" if pr.get("loss_best") is not None else ""
        lines.append(f"  phase {pr.get('phase')}: {pr['done']}/{pr['total']}{best}{eta}")
    if job.get("error"):
        lines.append(f"  error: {job['error']}")
    if job.get("schedule_version_id"):
        lines.append(f"  schedule version id {job['schedule_version_id']}")
    for e in (job.get("events") or [])[-8:]:
        lines.append(f"  {e['at']}  {e['kind']:<16} {e['message']}")
    return "\n".join(lines)


def format_jobs(page: dict[str, Any]) -> str:
    rows = page["data"]
    if not rows:
        return "no jobs"
    lines = [f"{'id':<34}{'model':<18}{'solver':<10}{'nfe':>4}  {'state':<10}{'progress':>12}  created"]
    for j in rows:
        pr = j["progress"]
        prog = f"{pr['phase'] or ''} {pr['done']}/{pr['total']}" if pr["total"] else ""
        lines.append(f"{j['id']:<34}{j['model']:<18}{j['solver']:<10}{j['nfe']:>4}  {j['state']:<10}{prog:>12}  {j['created_at'][:19]}")
    return "\n".join(lines)
