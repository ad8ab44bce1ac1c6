"""The dashboard in headless Chromium against a live service running real (tiny) LD3 jobs."""

from __future__ import annotations

import io
import re

import pytest
from dashboard_support import DIGITS_OPTIONS, FAST_OPTIONS, JOB_TIMEOUT_S, LONG_OPTIONS, SCREENSHOTS, WATCHED_OPTIONS
from PIL import Image

SCHEDULE_KEY = "gmm2d-edm/euler/4"
DIGITS_NFE = 3
# The sample grid once the browser has decoded it: its pixel size, and how many pixels of its
# top row (the heuristic's samples) differ from the pixel below them in the bottom row (LD3's).
GRID_PIXELS = """img => {
  const c = document.createElement('canvas');
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const g = c.getContext('2d');
  g.drawImage(img, 0, 0);
  const h = c.height / 2;
  const top = g.getImageData(0, 0, c.width, h).data, bottom = g.getImageData(0, h, c.width, h).data;
  let differ = 0;
  for (let i = 0; i < top.length; i += 4) if (top[i] !== bottom[i]) differ++;
  return {width: img.naturalWidth, height: img.naturalHeight, differ};
}"""
TO_PRECISION_4 = "x => Number(x).toPrecision(4)"  # how the pages print a loss
GRID_LOADED = "() => { const i = document.querySelector('#samples-img'); return !!i && i.complete && i.naturalWidth > 0; }"


def _shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")  # the sticky header at the top of a full-page shot
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_a_finished_image_job_shows_its_sample_grid_and_the_heuristics_step_times(service, dashboard, canvas_ink):
    job_id = service.submit(DIGITS_OPTIONS, model="ddpm-digits", nfe=DIGITS_NFE)
    page = dashboard("jobs:submit", f"#/jobs/{job_id}")  # opened while the job runs
    page.wait_for_function(GRID_LOADED, timeout=JOB_TIMEOUT_S * 1000)
    job = service.wait_job(job_id, ("succeeded",))
    plotted = job["result"]["step_sigmas"]
    heuristics = DIGITS_OPTIONS["heuristics"]
    assert list(plotted) == ["ld3", *heuristics]
    assert all(plotted["ld3"] != pytest.approx(plotted[h]) for h in heuristics), "LD3 did not move off its start"

    # The grid shown is the version's stored PNG, and its two rows (same seeds) differ.
    with service.client("schedules:read") as c:
        v = c.get(f"/dashboard/api/versions/{job['schedule_version_id']}").json()
        r = c.get(f"/schedules/ddpm-digits/euler/{DIGITS_NFE}/versions/{v['version']}/samples.png")
    assert v["has_samples"] and r.status_code == 200, r.text
    stored = Image.open(io.BytesIO(r.content))
    shown = page.eval_on_selector("#samples-img", GRID_PIXELS)
    assert (shown["width"], shown["height"]) == stored.size
    assert shown["differ"] > 0, "the heuristic's and LD3's samples are the same picture"
    assert page.locator("#samples-img").is_visible()
    assert page.inner_text("#samples figcaption") == f"top: {job['result']['best_heuristic']}; bottom: LD3 (learned)"

    # The step-time plot draws the learned schedule and every heuristic the worker stored, the best one named.
    best = job["result"]["best_heuristic"]
    chart = page.locator("#schedule-chart")
    assert chart.get_attribute("data-series").split(",") == [
        "LD3 (learned)", *(f"{h} (best heuristic)" if h == best else h for h in heuristics)]
    assert int(chart.get_attribute("data-points")) == (DIGITS_NFE + 1) * len(plotted)
    assert canvas_ink(page, "#schedule-chart") > 2000
    assert "drawn from the end points" not in page.inner_text("#schedule-section")  # not the fallback
    assert int(page.get_attribute("#loss-chart", "data-points")) > 0

    # The summary of a finished job: no phase, what it serves, the served schedule's validation loss.
    summary = dict(zip(page.locator("#job-summary dt").all_inner_texts(), page.locator("#job-summary dd").all_inner_texts()))
    served = job["published"]
    assert summary["phase"] == "—"
    name = "LD3 (learned)" if served["source"] == "ld3" else served["source"]
    assert summary["served"].startswith(f"version {served['version']} serves {name}") and best in summary["served"]
    assert summary["validation loss (served / best in training)"].startswith(page.evaluate(TO_PRECISION_4, served["val_loss"]))
    _shot(page, "job")


def test_a_job_appears_advances_finishes_and_its_schedule_is_plotted(service, dashboard, canvas_ink):
    page = dashboard("jobs:submit")
    job_id = service.submit(WATCHED_OPTIONS)
    row = page.locator(f"tr[data-job-id='{job_id}']")
    row.wait_for()
    page.locator(f"tr[data-job-id='{job_id}'][data-state='succeeded']").wait_for(timeout=120_000)

    seen = page.evaluate("id => window.__progress.filter(p => p[0] === id)", job_id)
    running = {float(pct) for _, state, pct in seen if state == "running"}
    assert len(running) >= 2, f"the bar did not advance while the job ran: {seen}"
    assert seen[-1][1:] == ["succeeded", "100.0"]
    assert row.locator("td").nth(2).inner_text() == "gmm2d-edm"

    # Finished: no phase, what it serves and its gain, the served schedule's validation loss.
    job = service.wait_job(job_id, ("succeeded",))
    pub = job["published"]
    assert job["progress"]["phase"] == "evaluation"  # stored: the phase it ended in; not shown as if it still ran
    assert row.locator("td.phase").inner_text() == "—"
    assert row.locator("td.served").inner_text() == ("LD3" if pub["source"] == "ld3" else pub["source"])
    assert re.fullmatch(r"[−+]\d+\.\d %|0 %", row.locator("td.gain").inner_text())
    assert (row.locator("td.gain").inner_text() == "0 %") == (pub["source"] != "ld3")
    assert row.locator("td.val-loss").inner_text() == page.evaluate(TO_PRECISION_4, pub["val_loss"])

    row.locator("a").first.click()
    page.wait_for_selector("#schedule-chart[data-points]")
    assert int(page.get_attribute("#schedule-chart", "data-points")) >= 5 * 3  # N+1 = 5 times, 3 schedules
    assert page.get_attribute("#schedule-chart", "data-series").split(",")[:1] == ["LD3 (learned)"]
    assert canvas_ink(page, "#schedule-chart") > 2000
    assert int(page.get_attribute("#loss-chart", "data-points")) > 0
    assert canvas_ink(page, "#loss-chart") > 2000
    assert page.locator("#events tr[data-kind='succeeded']").count() == 1
    assert page.locator("#cancel-job").count() == 0  # finished: nothing to cancel

    page.click("#schedule-link")
    page.wait_for_selector(f"a.cell[data-key='{SCHEDULE_KEY}']")
    page.wait_for_selector("#history tr.active")
    cell = page.locator(f"a.cell[data-key='{SCHEDULE_KEY}']").inner_text()
    assert re.search(r"v\d+ ([−+]\d+\.\d %|= \w+)", cell), cell
    assert page.locator("button.promote").count() == 0  # not an admin key
    page.wait_for_selector("#schedule-detail #schedule-chart[data-points]")
    # The versions chart: the served schedule against the best heuristic the guard compared it with.
    best = job["result"]["best_heuristic"]
    assert f"{best} (best heuristic)" in page.get_attribute("#schedule-detail #schedule-chart", "data-series").split(",")
    note = page.inner_text("#version-note")
    assert note.startswith("serves ") and "the best heuristic on the test pairs" in note and best in note


def test_cancel_from_the_job_page_and_a_read_only_key_sees_no_cancel_button(service, dashboard):
    job_id = service.submit(LONG_OPTIONS)
    page = dashboard("jobs:submit")
    page.locator(f"tr[data-job-id='{job_id}'][data-state='running'] [role=progressbar]:not([aria-valuenow='0.0'])").wait_for(timeout=120_000)
    _shot(page, "jobs")

    reader = dashboard("schedules:read", f"#/jobs/{job_id}")
    reader.wait_for_selector("#job-summary dl")
    reader.wait_for_selector(".badge.running")
    assert reader.locator("#cancel-job").count() == 0

    page.locator(f"tr[data-job-id='{job_id}'] a").first.click()
    page.click("#cancel-job")  # the confirmation dialog is accepted by the fixture
    page.wait_for_selector(".toolbar .badge.cancelled", timeout=60_000)
    assert page.locator("#cancel-job").count() == 0
    assert service.wait_job(job_id, ("cancelled",))["state"] == "cancelled"
    assert page.locator("#events tr[data-kind='cancelled']").count() == 1


def test_an_admin_rolls_back_and_promotes_versions_and_sees_which_had_the_guard_off(service, dashboard):
    # The newest version is published with the test guard overridden (guard_z 0).
    for seed, guard in ((1, {}), (2, {"guard_z": 0})):
        job = service.wait_job(service.submit({**FAST_OPTIONS, "seed": seed, **guard}), ("succeeded", "failed", "cancelled"))
        assert job["state"] == "succeeded", job["error"]
    with service.client("schedules:read") as c:
        versions = c.get(f"/schedules/{SCHEDULE_KEY}/versions").json()
    newest, older = versions[-1]["version"], versions[-2]["version"]
    assert versions[-1]["active"] and versions[-1]["config"]["guard_z"] == 0 and versions[-2]["config"]["guard_z"] > 0

    reader = dashboard("schedules:read", "#/schedules?model=gmm2d-edm&solver=euler&nfe=4")
    reader.wait_for_selector(f"#history tr[data-version='{newest}'].active")
    assert reader.locator("button.promote").count() == 0
    marked = [int(v) for v in reader.locator("#history tr:has(.badge.guard-off)").evaluate_all("rs => rs.map(r => r.dataset.version)")]
    assert marked == [newest]
    assert reader.locator(f"a.cell[data-key='{SCHEDULE_KEY}'] .badge.guard-off").count() == 1  # the active one
    assert "the guard was overridden (guard_z = 0)" in reader.inner_text("#version-note")
    jobs = dashboard("schedules:read")
    jobs.locator(f"tr[data-job-id='{job['id']}'] td.served .badge.guard-off").wait_for()

    admin = dashboard("admin", "#/schedules?model=gmm2d-edm&solver=euler&nfe=4")
    admin.wait_for_selector(f"#history tr[data-version='{newest}'].active")
    button = admin.locator(f"#history tr[data-version='{older}'] button.promote")
    assert button.inner_text() == "Roll back to this"
    button.click()
    admin.wait_for_selector(f"#history tr[data-version='{older}'].active")
    with service.client("schedules:read") as c:
        assert c.get(f"/schedules/{SCHEDULE_KEY}").json()["version"] == older
    promote = admin.locator(f"#history tr[data-version='{newest}'] button.promote")
    assert promote.inner_text() == "Promote"
    promote.click()
    admin.wait_for_selector(f"#history tr[data-version='{newest}'].active")
    with service.client("schedules:read") as c:
        assert c.get(f"/schedules/{SCHEDULE_KEY}").json()["version"] == newest
    admin.wait_for_selector("#schedule-detail #schedule-chart[data-points]")
    _shot(admin, "schedules")
