#!/usr/bin/env bash
# Test the GPU check on a CPU: a fresh Python 3.12 venv holding only what a GPU image typically has
# (jax and jaxlib 0.11.2 and the newest numpy, flax, optax, orbax-checkpoint, rich, tqdm, scipy,
# matplotlib, imageio, tensorboard and pytest), fetch.sh into a folder, then check.sh --smoke with
# the index unused. Usage: benchmarks/gpu/smoke-on-cpu.sh [WORK_DIR]   (default /tmp/mjxflow-gpu-smoke)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="${1:-/tmp/mjxflow-gpu-smoke}"
py="${PYTHON312:-$("$here/../../.ci/python312")}"  # python3.12 on the path, else pyenv's
rm -rf "$work/host"
"$py" -m venv "$work/host"
"$work/host/bin/pip" install -q --disable-pip-version-check jax==0.11.2 jaxlib==0.11.2 numpy flax optax orbax-checkpoint \
    rich tqdm scipy matplotlib imageio tensorboard pytest
rm -rf "$work/wheels" "$work/out"
PIP="$work/host/bin/python -m pip" "$here/fetch.sh" "$work/wheels"
echo "smoke: the wheel folder is $(du -sm "$work/wheels" | cut -f1) MiB"
t=$(date +%s)
PIP_NO_INDEX=1 PIP_FIND_LINKS= PYTHON="$work/host/bin/python" "$here/check.sh" "$work/wheels" "$work/out" --smoke
echo "smoke: check.sh --smoke took $(( $(date +%s) - t )) s; files: $(ls "$work/out" | tr '\n' ' ')"
