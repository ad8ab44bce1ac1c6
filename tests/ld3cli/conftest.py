"""The ``ld3`` command's tests run it against the real app: the API's fixtures (``tests/api/api_fixtures.py``),
on its folder's path, and ``live_url``: that app served by uvicorn."""

import sys
import threading
import time
from pathlib import Path

import pytest
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))

from api_fixtures import add_version, client, factory, key_for, make_client, queue  # noqa: E402, F401  (fixtures)
from api_support import settings_for  # noqa: E402

from api.main import create_app  # noqa: E402


@pytest.fixture
def live_url(db_url, factory, queue):  # noqa: F811  (the fixtures imported above)
    """The app served by uvicorn on a free port, in a thread (jobs are only recorded, not run)."""
    config = uvicorn.Config(create_app(settings_for(db_url), queue), host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not (server.started and server.servers):
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
