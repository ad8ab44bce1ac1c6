"""The client's tests talk to the real app: the API's fixtures (``tests/api/api_fixtures.py``), on its folder's path.
Diffusers pipelines run on models made here or shipped in models/: nothing may be fetched."""

import os
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"  # before diffusers/transformers are imported by any test module
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))

from api_fixtures import add_version, client, factory, key_for, make_client, queue  # noqa: E402, F401  (fixtures)
