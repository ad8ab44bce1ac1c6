"""The client's tests talk to the real app: the API's fixtures (``tests/api/api_fixtures.py``), on its folder's path."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))

from api_fixtures import add_version, client, factory, key_for, make_client, queue  # noqa: E402, F401  (fixtures)
