"""``GET /schedules/{model}/{solver}/{nfe}/versions/{v}/samples.png`` (``api/routes/samples.py``)."""

from __future__ import annotations

import io

from api_support import version_data
from PIL import Image

from registry import schedules as sq
from registry.db import session_scope

BASE = "/schedules/ddpm-digits/unipc/5/versions"


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (8, 4), 128).save(buf, format="PNG")
    return buf.getvalue()


def _store(factory, png: bytes | None, guidance: float | None = None) -> int:
    with session_scope(factory) as s:
        return sq.create_version(s, version_data(5, guidance=guidance).model_copy(update={"samples_png": png})).version


def test_the_stored_grid_is_served_as_an_immutable_png(client, factory, key_for):
    v = _store(factory, _png())
    r = client.get(f"{BASE}/{v}/samples.png", headers=key_for("schedules:read"))
    assert r.status_code == 200 and r.headers["content-type"] == "image/png" and r.content == _png()
    assert "immutable" in r.headers["cache-control"]


def test_a_version_without_a_grid_or_no_version_is_a_404_saying_which(client, factory, key_for):
    read = key_for("schedules:read")
    v = _store(factory, None)
    none = client.get(f"{BASE}/{v}/samples.png", headers=read)
    assert none.status_code == 404 and "has no sample grid" in none.json()["detail"]
    missing = client.get(f"{BASE}/9/samples.png", headers=read)
    assert missing.status_code == 404 and "no version 9" in missing.json()["detail"]


def test_guidance_picks_the_key(client, factory, key_for):
    read = key_for("schedules:read")
    v = _store(factory, _png(), guidance=2.0)
    assert client.get(f"{BASE}/{v}/samples.png", params={"guidance": 2.0}, headers=read).content == _png()
    assert client.get(f"{BASE}/{v}/samples.png", headers=read).status_code == 404  # no unguided version


def test_the_grid_needs_the_read_scope(client, factory, key_for):
    v = _store(factory, _png())
    assert client.get(f"{BASE}/{v}/samples.png").status_code == 401
    assert client.get(f"{BASE}/{v}/samples.png", headers=key_for("jobs:submit")).status_code == 403
