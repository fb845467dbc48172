#!/usr/bin/env bash
# Build bench/.venv-syft: PySyft 0.9.5 in its own virtualenv, the reference side of the
# cycle benchmark (bench/pysyft/cycle.py). Kept apart from the project's .venv because
# PySyft 0.9.5 pins numpy/pandas/pydantic versions that clash with ours.
#
#   bash bench/setup_pysyft_venv.sh          # idempotent: a no-op once syft 0.9.5 imports
#   PYTHON=python3.11 bash bench/setup_pysyft_venv.sh
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${SYFT_VENV:-$HERE/.venv-syft}"
PYTHON="${PYTHON:-python3}"
SYFT_VERSION="0.9.5"

ready() {
    [ -x "$VENV/bin/python" ] && "$VENV/bin/python" - "$SYFT_VERSION" <<'PY' >/dev/null 2>&1
import sys
from importlib.metadata import version
import opendp.prelude, psutil, sniffio  # noqa: F401  the cycle script needs these too
sys.exit(0 if version("syft") == sys.argv[1] else 1)
PY
}

if ready; then
    echo "PySyft $SYFT_VERSION venv ready at $VENV"
    exit 0
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# syft pins most of its tree; opendp for the DP mean, psutil to measure server RSS.
"$VENV/bin/python" -m pip install --quiet "syft==$SYFT_VERSION" sniffio psutil opendp

if ! ready; then
    echo "PySyft $SYFT_VERSION venv at $VENV does not import; see pip output above" >&2
    exit 1
fi
echo "PySyft $SYFT_VERSION venv ready at $VENV"
