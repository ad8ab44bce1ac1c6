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


def test_schedule_series_prefers_the_step_sigmas_the_worker_stored(js):
    version = "{source: 'ld3', sigmas: [80, 1, 0.002], schedule_config: {name: 'edm'}}"
    fallback = js(f"p.scheduleSeries({version}, null)")
    assert [s["name"] for s in fallback["series"]] == ["LD3 (learned)", "logsnr", "edm"]
    assert fallback["series"][0]["ys"] == pytest.approx([math.log(80), 0.0, math.log(0.002)])
    assert "end points" in fallback["note"] and fallback["yLabel"].startswith("log σ")
    stored = js(f"p.scheduleSeries({version}, {{step_sigmas: {{ld3: [80, 1, 0.002], time_uniform: [80, 40, 0.002]}}}})")
    assert [s["name"] for s in stored["series"]] == ["LD3 (learned)", "time_uniform"] and stored["note"] == ""


def test_loss_series_and_ticks(js):
    curve = "[{iteration: 0, train: null, val_hard: 0.5, val_soft: 0.4}, {iteration: 2, train: 0.3, val_hard: 0.2, val_soft: 0.1}]"
    series = js(f"p.lossSeries({curve})")
    assert [s["name"] for s in series] == ["training", "validation (hard)", "validation (soft)"]
    assert series[0]["ys"] == [None, 0.3] and series[1]["xs"] == [0, 2]
    assert js("c.niceTicks(0, 1, 5)") == [0, 0.2, 0.4, 0.6, 0.8, 1]
