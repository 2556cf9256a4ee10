#!/usr/bin/env bash
# The benchmark-only peers' own venv: Hugging Face `datasets` (and the torch it feeds), pinned in
# requirements.txt beside this script. Never a runtime or test dependency of petastorm: datasets pins an older
# fsspec than ours, so it lives in its own venv and bench_loaders.py runs its pass there as a subprocess.
#
#   bash benchmarks/peers/make_venv.sh [VENV]      (default: bench-out/venv-peers; a no-op once it is complete)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${1:-$here/../../bench-out/venv-peers}"
stamp="$venv/.requirements.txt"
if [ -f "$stamp" ] && cmp -s "$stamp" "$here/requirements.txt"; then
    exit 0
fi
python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q -r "$here/requirements.txt"
"$venv/bin/python" -c "import datasets, torch; print('venv-peers: datasets', datasets.__version__, 'torch', torch.__version__)"
cp "$here/requirements.txt" "$stamp"
