#!/usr/bin/env bash
# Sets up .venv with everything fumd needs, on a fresh machine. Idempotent.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch pinned: 2.13.0 resolves to the CPU wheel here; an unpinned torch pulls a multi-GB CUDA build.
.venv/bin/python -m pip install -q "torch==2.13.0"
# norse 1.1.0 declares torchvision (-> CUDA torch) but its LIF code does not use it: no deps.
.venv/bin/python -m pip install -q --no-deps "norse==1.1.0"
.venv/bin/python -m pip install -q -e ".[test]"
.venv/bin/python -c "import fumd, norse.torch.functional.lif_box" >/dev/null
# Prometheus (promtool + server) for the monitoring tests, from Debian's package; optional: those
# tests skip with a reason where it cannot be installed (no apt, not root).
if ! command -v promtool >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    { DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus \
      || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus; }; } >/dev/null 2>&1 \
      || echo "setup.sh: could not install prometheus; the monitoring tests will be skipped" >&2
fi
