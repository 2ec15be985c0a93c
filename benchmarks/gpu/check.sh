#!/usr/bin/env bash
# The offline GPU check: install the wheels fetch.sh downloaded into a private folder (never over the
# host's JAX, numpy, flax, optax or orbax), print the versions, then measure (check.py).
# Usage: benchmarks/gpu/check.sh WHEEL_DIR OUT_DIR [--smoke]    (PYTHON=... picks the interpreter)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
[ $# -ge 2 ] || { echo "usage: benchmarks/gpu/check.sh WHEEL_DIR OUT_DIR [--smoke]" >&2; exit 2; }
wheels="$1"; out="$2"; shift 2
for a in "$@"; do [ "$a" = --smoke ] || { echo "check.sh: unknown option $a (only --smoke)" >&2; exit 2; }; done
py="${PYTHON:-python3}"
ls "$wheels"/*.whl >/dev/null 2>&1 || { echo "check.sh: no wheels in $wheels (run benchmarks/gpu/fetch.sh $wheels where the index is reachable)" >&2; exit 2; }
site="$(mktemp -d "${TMPDIR:-/tmp}/mjxflow-site-XXXXXX")"
trap 'rm -rf "$site"' EXIT
"$py" -m pip install -q --no-index --no-deps --disable-pip-version-check --target "$site" "$wheels"/*.whl
mkdir -p "$out"
PYTHONPATH="$site:$root${PYTHONPATH:+:$PYTHONPATH}" "$py" "$here/check.py" "$out" "$@"
