"""The dashboard's pure JS helpers (format.js, schedule_plot.js, chart.js), run in Chromium."""

from __future__ import annotations

import math

import pytest


@pytest.fixture(scope="module")
def js(browser, service):
    """``js(expr)``: the value of ``expr`` with the modules imported as ``f``, ``p`` and ``c``."""
    page = browser.new_page()
    errors: list[str] = []
    # Chromium asks a JSON document's origin for /favicon.ico (404): the browser's, not the modules'.
    page.on("console", lambda m: errors.append(m.text)
            if m.type == "error" and not m.location.get("url", "").endswith("/favicon.ico") else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{service.url}/dashboard/api/config")  # same origin as the modules

    def run(expr: str):
        return page.evaluate(f"""async () => {{
            const f = await import('/dashboard/js/format.js');
            const p = await import('/dashboard/js/schedule_plot.js');
            const c = await import('/dashboard/js/chart.js');
            return {expr};
        }}""")

    yield run
    page.close()
    assert not errors, errors


def test_polling_backs_off_when_hidden_and_after_failures(js):
    assert js("f.nextDelay(1000)") == 1000
    assert js("f.nextDelay(1000, {hidden: true})") == 10_000
    assert js("[1, 2, 3].map(n => f.nextDelay(1000, {failures: n}))") == [2000, 4000, 8000]
    assert js("f.nextDelay(5000, {hidden: true, failures: 4})") == 60_000  # capped
    assert js("f.nextDelay(50)") == 200  # floor
    assert js("f.nextDelay(0, {failures: 3})") == 0  # refresh off stays off


def test_quality_gain_of_a_learned_and_of_a_served_heuristic(js):
    q = {"metric": "l2", "source": "ld3", "learned": {"mean": 0.15, "sem": 0.02},
         "best_heuristic": {"name": "logsnr", "mean": 0.2, "sem": 0.03}, "learned_minus_best": {"mean": -0.05, "sem": 0.01}}
    g = js(f"f.qualityGain({q!r})".replace("'", '"'))
    assert g["served"] == "ld3" and g["best"] == "logsnr" and math.isclose(g["relative"], 0.25)
    assert js(f"f.fmtGain(f.qualityGain({q!r}))".replace("'", '"')) == "−25.0 %"
    served = {**q, "source": "logsnr"}
    assert js(f"f.fmtGain(f.qualityGain({served!r}))".replace("'", '"')) == "= logsnr"
    assert js("f.qualityGain({metric: 'l2'})") is None


def test_durations_progress_and_routes(js):
    assert js("[5, 65, 3725, 90000, null, -1].map(f.fmtDuration)") == ["5 s", "1 m 05 s", "1 h 02 m", "1 d 1 h", "—", "—"]
    assert js("f.progressPercent({state: 'running', progress: {done: 5, total: 20}})") == 25
    assert js("f.progressPercent({state: 'succeeded', progress: {done: 0, total: 0}})") == 100
    assert js("f.progressLabel({state: 'running', progress: {phase: 'training', done: 5, total: 20, eta_s: 12}})") == "training 5/20 · ETA 12 s"
    assert js("f.parseRoute('#/jobs/ab%20c?state=running')") == {"path": ["jobs", "ab c"], "params": {"state": "running"}}
    assert js("f.parseRoute('')") == {"path": ["jobs"], "params": {}}
    assert js("f.can({scopes: ['admin']}, 'jobs:submit') && !f.can({scopes: ['schedules:read']}, 'jobs:submit')") is True


def test_endpoint_heuristics_are_uniform_in_log_sigma_and_in_sigma_to_the_one_seventh(js):
    log = js("p.endpointHeuristic('logsnr', 80, 0.002, 4)")
    steps = [math.log(a) - math.log(b) for a, b in zip(log[:-1], log[1:])]
    assert log[0] == 80 and log[-1] == 0.002 and all(math.isclose(s, steps[0]) for s in steps)
    edm = js("p.endpointHeuristic('edm', 80, 0.002, 4)")
    roots = [s ** (1 / 7) for s in edm]
    assert all(math.isclose(a - b, roots[0] - roots[1], rel_tol=1e-9) for a, b in zip(roots[:-1], roots[1:]))
    flow = js("p.endpointHeuristic('logsnr', 0.999, 0.001, 4, {flow: true})")
    lam = [math.log((1 - s) / s) for s in flow]  # rectified flow: lambda = log((1 - t) / t)
    assert all(math.isclose(b - a, lam[1] - lam[0], rel_tol=1e-9) for a, b in zip(lam[:-1], lam[1:]))


def test_schedule_series_draws_the_stored_step_sigmas_and_names_the_best_heuristic(js):
    version = ("{source: 'ld3', sigmas: [80, 1, 0.002], schedule_config: {name: 'edm'}, quality: {best_heuristic: {name: 'time_uniform'}}, "
               "step_sigmas: {ld3: [80, 1, 0.002], time_uniform: [80, 40, 0.002], logsnr: [80, 0.4, 0.002]}}")
    every = js(f"p.scheduleSeries({version})")
    assert [s["name"] for s in every["series"]] == ["LD3 (learned)", "time_uniform (best heuristic)", "logsnr"]
    assert every["series"][0]["ys"] == pytest.approx([math.log(80), 0.0, math.log(0.002)]) and every["note"] == ""
    best = js(f"p.scheduleSeries({version}, {{heuristics: 'best'}})")  # the versions chart: the guard's comparison
    assert [s["name"] for s in best["series"]] == ["LD3 (learned)", "time_uniform (best heuristic)"]
    served = js(f"p.scheduleSeries({{...{version}, source: 'time_uniform'}}, {{heuristics: 'best'}})")
    assert [s["name"] for s in served["series"]] == ["LD3 (learned)", "time_uniform (best heuristic)"]
    assert served["note"] == ""
    missing = js(f"p.scheduleSeries({{...{version}, quality: {{best_heuristic: {{name: 'edm'}}}}}}, {{heuristics: 'best'}})")
    assert [s["name"] for s in missing["series"]] == ["LD3 (learned)"] and missing["note"] == "the best heuristic (edm) has no stored step times"


def test_schedule_series_without_stored_step_sigmas_falls_back_to_the_end_points(js):
    version = "{source: 'ld3', sigmas: [80, 1, 0.002], schedule_config: {name: 'edm'}, quality: {best_heuristic: {name: 'logsnr'}}}"
    fallback = js(f"p.scheduleSeries({version})")
    assert [s["name"] for s in fallback["series"]] == ["LD3 (learned)", "logsnr (best heuristic)", "edm"]
    assert "end points" in fallback["note"] and fallback["yLabel"].startswith("log σ")
    other = js(f"p.scheduleSeries({{...{version}, quality: {{best_heuristic: {{name: 'time_quadratic'}}}}}})")
    assert other["note"].endswith("the best heuristic (time_quadratic) cannot be drawn from them")
    served = js(f"p.scheduleSeries({{...{version}, source: 'logsnr'}})")
    assert [s["name"] for s in served["series"]] == ["logsnr (served, best heuristic)", "edm"]


def test_what_the_jobs_list_shows_of_a_running_and_of_a_finished_job(js):
    running = "{state: 'running', progress: {phase: 'training', loss_current: 0.3, loss_best: 0.2}, published: null}"
    done = ("{state: 'succeeded', progress: {phase: 'evaluation', loss_current: 0.3, loss_best: 0.2}, "
            "published: {version: 2, source: 'time_uniform', val_loss: 0.25, quality: {}}}")
    failed = "{state: 'failed', progress: {phase: 'teacher', loss_current: 0.9, loss_best: null}, published: null}"
    assert js(f"[{running}, {done}, {failed}].map(f.phaseLabel)") == ["training", "—", "stopped in teacher"]
    assert js("f.phaseLabel({state: 'queued', progress: {phase: null}})") == "—"
    # A finished job shows the validation loss of what it serves, not the last one of training.
    assert js(f"[{running}, {done}, {failed}].map(f.jobValLoss)") == [0.3, 0.25, None]
    assert js("['ld3', 'time_uniform', null].map(f.servedName)") == ["LD3", "time_uniform", "—"]
    assert js("[{guard_z: 0}, {guard_z: 1.645}, {}, null].map(f.guardOff)") == [True, False, False, False]
    g = "{served: 'ld3', relative: 0.25, diff: -0.05, sem: 0.01, best: 'logsnr', metric: 'l2'}"
    assert js(f"[f.gainClass({g}), f.gainClass({{...{g}, relative: -0.1}}), f.gainClass({{...{g}, served: 'edm'}})]") == [
        "better", "worse", "neutral"]
    assert js(f"f.gainTitle({g})") == "l2: LD3 -0.05000 ± 0.01000 vs logsnr"
    q = ("{metric: 'l2', source: 'ld3', learned: {mean: 0.15, sem: 0.02}, best_heuristic: {name: 'logsnr', mean: 0.2, sem: 0.03}, "
         "learned_minus_best: {mean: -0.05, sem: 0.01}}")
    assert js(f"f.servedSummary('ld3', {q})") == "LD3 (learned), test loss −25.0 % against the best heuristic on the test pairs, logsnr"
    assert js(f"f.servedSummary('logsnr', {{...{q}, source: 'logsnr'}})") == (
        "logsnr, the best heuristic on the test pairs: LD3 did not beat it")
    assert js("f.servedSummary('ld3', {})") == "LD3"


# Ink per canvas column left of the plot area (the y axis title and the tick labels), after
# drawing a loss chart with wide tick labels.
Y_AXIS_INK = """(() => {
  const canvas = document.createElement('canvas');
  c.drawChart(canvas, {series: [{name: 'validation', xs: [0, 1, 2], ys: YS}], xLabel: 'iteration', yLabel: 'LABEL', logY: LOG});
  const dpr = window.devicePixelRatio || 1, left = Math.floor(Number(canvas.dataset.plotLeft) * dpr) - 1;
  const d = canvas.getContext('2d').getImageData(0, 0, left, canvas.height).data;
  const ink = new Array(left).fill(false);
  for (let i = 3; i < d.length; i += 4) if (d[i] > 0) ink[((i - 3) / 4) % left] = true;
  return {ink, dpr};
})()"""


@pytest.mark.parametrize("ys, label, log", [("[0.0158, 0.0251, 0.0316]", "l2", "true"),
                                             ("[-0.0125, 0.0, 0.0375]", "lpips", "false"),
                                             ("[12000, 15000, 31000]", "a much longer y axis title", "false")])
def test_the_y_axis_title_never_touches_the_tick_labels(js, ys, label, log):
    out = js(Y_AXIS_INK.replace("YS", ys).replace("LABEL", label).replace("LOG", log))
    ink, dpr = out["ink"], out["dpr"]
    columns = [x for x, on in enumerate(ink) if on]
    title_end = next(x for x in columns if x + 1 >= len(ink) or not ink[x + 1])  # the first run of ink: the title
    ticks_start = next((x for x in columns if x > title_end), None)
    assert title_end < 20 * dpr, "the title's run of ink runs into the tick labels"
    assert ticks_start is not None and ticks_start - title_end > 6 * dpr, (title_end, ticks_start)


def test_the_legend_wraps_into_rows_above_the_plot_instead_of_running_off_the_chart(js):
    out = js("""(() => {
      const canvas = document.createElement('canvas');  // 600 x 300 CSS pixels
      const names = ['LD3 (learned)', 'time_uniform (best heuristic)', 'time_quadratic', 'logsnr', 'edm', 'another heuristic',
                     'and one more with a long name'];
      c.drawChart(canvas, {series: names.map((name, k) => ({name, xs: [0, 1], ys: [k, k + 1]})), xLabel: 'x', yLabel: 'y'});
      const dpr = window.devicePixelRatio || 1, top = Number(canvas.dataset.plotTop);
      const d = canvas.getContext('2d').getImageData(Math.round(590 * dpr), 0, Math.round(10 * dpr), Math.round(top * dpr)).data;
      let ink = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) ink++;
      return {top, ink};
    })()""")
    assert out["top"] >= 16 + 2 * 18, "seven long names fit in one row of 600 px?"
    assert out["ink"] == 0, "the legend runs into the chart's right margin"


def test_loss_series_and_ticks(js):
    curve = "[{iteration: 0, train: null, val_hard: 0.5, val_soft: 0.4}, {iteration: 2, train: 0.3, val_hard: 0.2, val_soft: 0.1}]"
    series = js(f"p.lossSeries({curve})")
    assert [s["name"] for s in series] == ["training", "validation (hard)", "validation (soft)"]
    assert series[0]["ys"] == [None, 0.3] and series[1]["xs"] == [0, 2]
    assert js("c.niceTicks(0, 1, 5)") == [0, 0.2, 0.4, 0.6, 0.8, 1]
