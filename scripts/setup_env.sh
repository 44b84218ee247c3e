#!/usr/bin/env bash
# Create .venv (or $REPSR_VENV) and install repsr into it, keeping an adequate torch that is
# already installed (system or venv): a bare `pip install torch` would pull a multi-GB CUDA build.
#   scripts/setup_env.sh          runtime only
#   scripts/setup_env.sh test     plus the test tools (pytest, scikit-image, spandrel, ...)
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${REPSR_VENV:-.venv}"
python="${PYTHON:-python3}"
torch_spec="${REPSR_TORCH:-torch==2.13.0}"

if [ ! -x "$venv/bin/python" ]; then
    # --system-site-packages: reuse a torch the machine already has.
    "$python" -m venv --system-site-packages "$venv"
fi
py="$venv/bin/python"
pip() { "$py" -m pip --disable-pip-version-check -q "$@"; }

if ! "$py" - <<'PY' 2>/dev/null
import sys, torch
major, minor = (int(p) for p in torch.__version__.split("+")[0].split(".")[:2])
sys.exit(0 if (major, minor) >= (2, 1) else 1)
PY
then
    echo "setup: installing $torch_spec" >&2
    pip install "$torch_spec"
fi

if [ "${1:-}" = test ]; then
    pip install -e ".[test]"
    # spandrel declares torchvision, whose PyPI build does not load beside a CPU torch wheel;
    # Compact models need neither, so spandrel comes without its declared dependencies
    # (src/repsr/peers/spandrel_import.py explains the rest).
    pip install --no-deps "spandrel==0.4.2"
else
    pip install -e .
fi
