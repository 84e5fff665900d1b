#!/usr/bin/env bash
# Create the peer-library venv at experiments/peers/.venv (separate from the
# package's venv: statsforecast needs pandas<3). Idempotent: re-running
# re-installs from the pinned requirements.txt.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python3.11}"
if [ ! -x "$here/.venv/bin/python" ]; then
    "$python" -m venv "$here/.venv"
fi
"$here/.venv/bin/python" -m pip install --quiet --upgrade pip
"$here/.venv/bin/python" -m pip install --quiet -r "$here/requirements.txt"
"$here/.venv/bin/python" -c "import lightgbm, statsforecast, pytorch_forecasting, sklearn, pandas, torch; print('peers venv ok: pandas', pandas.__version__, 'torch', torch.__version__)"
