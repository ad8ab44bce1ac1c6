"""k-diffusion's modules without its package ``__init__``, offline.

k-diffusion 0.1.1.post1 is installed with ``--no-deps`` (scripts/bootstrap.sh): its ``__init__``
imports every module (``models`` needs einops and dctorch, ``evaluation`` clean-fid and CLIP,
``config`` jsonmerge), and its dependency list (wandb, accelerate, kornia, ...) is far more than
the samplers need. ``k_diffusion.sampling`` needs torch, SciPy, tqdm, torchdiffeq and torchsde
(the [dev] extra), ``k_diffusion.utils`` Pillow, safetensors and torchvision, ``external``
those two modules.

``kd(name)`` finds the installed package without importing it, registers an empty module with
the package's path as ``k_diffusion`` (so ``__init__`` never runs) and imports
``k_diffusion.<name>`` from there; its relative imports (``from . import utils``) load the
sibling modules the same way. Nothing is downloaded.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types


def kd(name: str) -> types.ModuleType:
    """``k_diffusion.<name>`` ("sampling", "external", "utils"), the package's ``__init__`` not run."""
    if "k_diffusion" not in sys.modules:
        spec = importlib.util.find_spec("k_diffusion")
        if spec is None or spec.submodule_search_locations is None:
            raise ImportError("k-diffusion is not installed: scripts/bootstrap.sh installs k-diffusion==0.1.1.post1 --no-deps")
        package = types.ModuleType("k_diffusion")
        package.__path__ = list(spec.submodule_search_locations)
        package.__spec__ = spec
        sys.modules["k_diffusion"] = package
    return importlib.import_module(f"k_diffusion.{name}")
