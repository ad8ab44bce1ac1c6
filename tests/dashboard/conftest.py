"""A live service for the dashboard tests, and headless Debian Chromium driven by Playwright.

``service``: uvicorn serving ``create_app`` in a thread, on a fresh SQLite database, with the
embedded runner executing jobs of the analytic model gmm2d-edm and of the shipped image model
ddpm-digits (seconds each), and one API key per scope created through ``registry.keys``.
``dashboard(scope)``: a new browser page on the dashboard with that key typed into its key form;
every console error, page error and request URL is recorded, and the test fails on any error
(or a URL carrying the key).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from dashboard_support import CHROMIUM, CHROMIUM_ARGS, GMM2D_EDM, JOB_TIMEOUT_S, KEY_SCOPES, POLL_MS, ROOT, VIEWPORT

from api.main import create_app
from registry import keys, models
from registry.db import make_engine, make_session_factory, session_scope, upgrade
from registry.settings import Settings


@dataclass
class Service:
    url: str
    keys: dict[str, str]  # KEY_SCOPES name -> plaintext key

    def client(self, scope: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"X-API-Key": self.keys[scope]}, timeout=30)

    def submit(self, options: dict[str, Any], *, model: str = "gmm2d-edm", solver: str = "euler", nfe: int = 4) -> str:
        with self.client("jobs:submit") as c:
            r = c.post("/jobs", json={"model": model, "solver": solver, "nfe": nfe, "options": options})
        assert r.status_code == 201, r.text
        return r.json()["id"]

    def wait_job(self, job_id: str, states: tuple[str, ...]) -> dict[str, Any]:
        """The job once its state is one of ``states`` (polling the API)."""
        deadline = time.monotonic() + JOB_TIMEOUT_S
        with self.client("schedules:read") as c:
            while True:
                job = c.get(f"/jobs/{job_id}").json()
                if job["state"] in states:
                    return job
                assert time.monotonic() < deadline, f"job {job_id} still {job['state']} after {JOB_TIMEOUT_S} s"
                time.sleep(0.2)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    url = f"sqlite:///{tmp_path_factory.mktemp('dashboard') / 'ld3.db'}"
    upgrade(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    with session_scope(factory) as s:
        models.sync_catalog(s, ROOT / "models" / "catalog.json")
        models.upsert_model(s, GMM2D_EDM)
        plain = {scope: keys.create_key(s, name=f"{scope.split(':')[0]}-key", scopes=scopes)[1]
                 for scope, scopes in KEY_SCOPES.items()}
    engine.dispose()
    settings = Settings(database_url=url, broker_url=None, auth_required=True, model_root=str(ROOT / "models"),
                        catalog_file=str(ROOT / "models" / "catalog.json"), device="cpu",
                        progress_every_s=0.05, poll_interval_s=0.2)
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, name="dashboard-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield Service(f"http://127.0.0.1:{port}", plain)
    server.should_exit = True
    thread.join(90)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@dataclass
class Watched:
    """What a page did: console errors, page errors, every request URL."""

    errors: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)


# Records every (job id, state, percent) the jobs table shows, across its re-renders.
PROGRESS_RECORDER = """
window.__progress = [];
new MutationObserver(() => {
  for (const tr of document.querySelectorAll('tr[data-job-id]')) {
    const bar = tr.querySelector('[role=progressbar]');
    if (bar) window.__progress.push([tr.dataset.jobId, tr.dataset.state, bar.getAttribute('aria-valuenow')]);
  }
}).observe(document, {childList: true, subtree: true});
"""


# Resolves once the page has run what it had queued: a frame and the tasks before it.
SETTLE = "() => new Promise(r => requestAnimationFrame(() => setTimeout(r, 0)))"
OPENED = pytest.StashKey[list[tuple[Any, Watched]]]()


def _take_errors(page: Any, seen: Watched) -> list[str]:
    """The page's errors so far, once it has settled; forgotten here so that each is reported once."""
    if not page.is_closed():
        page.evaluate(SETTLE)
    errors, seen.errors[:] = list(seen.errors), []
    return errors


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """A test whose dashboard pages logged a console error or threw fails (its call, not only its teardown)."""
    result = yield
    for page, seen in item.stash.get(OPENED, []):
        errors = _take_errors(page, seen)
        assert not errors, f"{page.url}: {errors}"
    return result


@pytest.fixture
def dashboard(browser: Any, service: Service, request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """``dashboard(scope, hash="#/jobs")``: a page signed in with that scope's key."""
    opened: list[tuple[Any, Watched]] = []
    request.node.stash[OPENED] = opened

    def open_page(scope: str, hash: str = "#/jobs") -> Any:
        context = browser.new_context(viewport=VIEWPORT)
        context.add_init_script(f"localStorage.setItem('ld3.pollMs', '{POLL_MS}');")
        context.add_init_script(PROGRESS_RECORDER)
        page = context.new_page()
        seen = Watched()
        page.on("console", lambda m: seen.errors.append(f"console: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: seen.errors.append(f"page error: {e}"))
        page.on("request", lambda r: seen.urls.append(r.url))
        page.on("dialog", lambda d: d.accept())
        opened.append((page, seen))
        page.goto(f"{service.url}/dashboard/{hash}")
        page.fill("#api-key", service.keys[scope])
        page.click("#key-form button[type=submit]")
        page.wait_for_selector(f"#whoami:has-text('{scope}')")
        return page

    yield open_page
    late = [(page.url, _take_errors(page, seen)) for page, seen in opened]
    for page, _ in opened:
        page.context.close()
    assert not any(errors for _, errors in late), late
    for _, seen in opened:
        leaked = [u for u in seen.urls if any(k in u for k in service.keys.values())]
        assert not leaked, f"an API key appeared in a URL: {leaked}"


@pytest.fixture
def canvas_ink() -> Callable[[Any, str], int]:
    """``canvas_ink(page, selector)``: how many pixels of that canvas are drawn (not transparent)."""

    def ink(page: Any, selector: str) -> int:
        return page.eval_on_selector(selector, """c => {
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; }""")

    return ink
