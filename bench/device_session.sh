#!/usr/bin/env bash
# The runs that wait for a GPU machine (the `device` tool), in one command: the checks and A/B probes
# the session notes left open, each with a time limit, its output in $OUT/<step>.txt and a line here.
# Run it after device-wheels.sh's prelude, in the project root:
#     bash bench/device_session.sh                  # every step below, in order
#     bash bench/device_session.sh vulkan-tile      # some of them
# Steps: cuda-tests (the split and spread kernels' tests, not run on CUDA since grid.py changed, and
# CUDA tensors read and written in place; one process ran 162 of its ~277 tests in 300 s on
# 2026-12-05, so six processes share them now, each its shard: $OUT/cuda-tests.<i>.txt),
# call-forms-cuda, call-forms-cuda-direct (with the driver's copies and CUDA tensors in place), call-forms-vulkan (what a call costs by its data's form), vulkan-tile (the
# projection's 128x128 tile on Vulkan, never timed), call-forms-cpu (the same on the CPU: a check
# of this script anywhere).
# A device call runs 600 s at most, so the steps go in three calls: cuda-tests; then call-forms-cuda
# call-forms-cuda-direct call-forms-vulkan (~450 s); then vulkan-tile.
set -u
OUT=${OUT:-/tmp/device_session}
mkdir -p "$OUT"

step() {   # step NAME SECONDS COMMAND...: run it, keep its output, print its exit status and last line
    local name=$1 limit=$2
    shift 2
    echo "== $name: $*"
    timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1
    echo "   rc=$? | $(tail -n 1 "$OUT/$name.txt")"
}

shards() {   # shards NAME SECONDS N COMMAND...: N processes, each on its shard of the tests
    # (MPSRNN_TEST_SHARD, tests/conftest.py) side by side: a test run here is mostly Taichi
    # compiling, one core a process, and the machine has 16
    local name=$1 limit=$2 n=$3 i
    shift 3
    echo "== $name: $n shards of: $*"
    for ((i = 0; i < n; i++)); do
        MPSRNN_TEST_SHARD=$i/$n timeout "$limit" "$@" > "$OUT/$name.$i.txt" 2>&1 &
    done
    wait
    for ((i = 0; i < n; i++)); do
        echo "   shard $i/$n | $(tail -n 1 "$OUT/$name.$i.txt")"
    done
}

for s in ${*:-cuda-tests call-forms-cuda call-forms-cuda-direct call-forms-vulkan vulkan-tile}; do
    case $s in
        cuda-tests) shards "$s" 560 6 env MPSRNN_ARCH=cuda python -m pytest -q -rs tests/test_fast_paths.py \
            tests/test_matrix_inference.py -k "split or spread or gpu_tensors or cuda_host or copy_flat or accepted_form or whole_host" ;;
        call-forms-cuda) step "$s" 150 python bench/probes/call_forms.py --arch cuda ;;
        call-forms-cuda-direct) step "$s" 150 env MPSRNN_CUDA_MEMCPY=on MPSRNN_CUDA_TENSORS=on \
            python bench/probes/call_forms.py --arch cuda ;;
        call-forms-vulkan) step "$s" 150 python bench/probes/call_forms.py --arch vulkan ;;
        call-forms-cpu) step "$s" 150 python bench/probes/call_forms.py --arch cpu --repeats 5 ;;
        vulkan-tile) step "$s" 300 python bench/probes/ab.py --arch vulkan --rounds 2 --repeats 3 \
            --config gru:1536:1:1500 --config gru:1024:2:1500 --config gru:2816:1:750 \
            --variant "" --variant "MPSRNN_PROJECTION_TILE=128x128" ;;
        *) echo "== $s: no such step"; exit 2 ;;
    esac
done
