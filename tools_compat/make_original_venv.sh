#!/usr/bin/env bash
# Create /work/main/.venv-original: the ORIGINAL petastorm 0.12.1 as a black-box pip dependency,
# used only to record its observable behaviour (error wording, shard assignment) and to benchmark it.
# Usage:  bash tools_compat/make_original_venv.sh            (idempotent; re-run to repair)
#         VENV=/some/other/path bash tools_compat/make_original_venv.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv-original}"
PY="${PYTHON311:-python3.11}"

if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"
"$VPY" -m pip install -q --upgrade pip 'setuptools<70' wheel
# Pins: the stack petastorm 0.12.1 was built against (numpy 1.x API, pyarrow < 15, pandas < 2.2).
"$VPY" -m pip install -q \
    'petastorm==0.12.1' \
    'numpy==1.26.4' \
    'pyarrow==14.0.2' \
    'pyspark==3.5.9' \
    'opencv-python-headless==4.11.0.86' \
    'pandas<2.2' \
    'dill' 'diskcache' 'future' 'psutil' 'six' 'packaging' 'fsspec' 'pyzmq' 'Pillow'
# -P and cd: never let the rebuild's ./petastorm (repo root) shadow the original.
(cd "$VENV" && "$VPY" -P - <<'PY'
import petastorm, numpy, pyarrow, pandas, pyspark, cv2
assert petastorm.__version__ == "0.12.1" and "site-packages" in petastorm.__file__, petastorm.__file__
print("original venv OK: petastorm", petastorm.__version__, "numpy", numpy.__version__,
      "pyarrow", pyarrow.__version__, "pandas", pandas.__version__, "pyspark", pyspark.__version__,
      "cv2", cv2.__version__)
PY
)
