#!/usr/bin/env bash
# The GPU check (README.md, "GPU check"), for a GPU machine that has Python 3.12 and a CUDA build of torch but no
# package registry: installs the wheels of .whl/ (`make gpu-wheels`, run beforehand where a registry is) into a private
# folder, then runs tools/gpu_check.py, which prints the versions, runs the cuda tests and a timed pass of every
# workflow (tools/gpu_workflows.py), measures the training throughput table (tools/gpu_throughput.py: baseline and
# Depthwise Shared at batch 16 and 64, bf16, channels-last on and off, against the former fp16 NCHW settings), and
# ends with one summary table and the throughput table (also written to $OUT/gpu_check.md when OUT is set).
# Arguments go to tools/gpu_check.py (--help lists them); its exit status is this script's.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
# pip's --target folder; the machine's site-packages, and its torch, stay as they are
SITE=${GPU_CHECK_SITE:-${TMPDIR:-/tmp}/raagr2-gpu-check-site}

shopt -s nullglob
wheels=(.whl/*.whl)
if [ ${#wheels[@]} -eq 0 ]; then
    echo "error: no wheels in .whl/: run 'make gpu-wheels' on a machine with a package registry and copy .whl/ here" >&2
    exit 2
fi

start=$(date +%s)
# emptied first: a wheel left from another list would shadow the machine's packages
rm -rf "$SITE"
# --no-deps: the wheels are the complete set (tools/gpu-wheels.txt); pip must not look for torch or anything else
PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 \
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
    "${wheels[@]}"
echo "installed ${#wheels[@]} wheels into $SITE in $(( $(date +%s) - start )) s"

# the source tree, not an installed copy, is what is checked
export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" tools/gpu_check.py "$@"
