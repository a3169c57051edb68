#!/usr/bin/env bash
# The device check for CUDA-graph captioning (vision/graphs.py, issue 16), one command from the repository root
# on a CUDA machine (an H100 or H200):
#
#   bash bench/gpu_check.sh                  # logs and gpu.json go to $OUT (default: ./gpu-check)
#
# (a) tests/test_graphs.py on the GPU: greedy decoding replayed as CUDA graphs, and CLIP's image tower too, against
#     the eager path, token for token on all 240 held-out test-world photos, in float16 and in bfloat16, at batch
#     1, 3, 5, 16, 64 and 240 (3, 5 and 240 padded up to a bucket). About a minute once the world exists.
#     The tests read the synthetic test world from CLIPCHAT_TEST_WORLD (default here: build/test-world, which
#     .gitignore keeps out of git). Without a finished one it is built first, on the CPU: about 15 minutes on 2
#     cores, several on 16, so carry one instead (30 MB):
#         cp -r /tmp/world1 build/test-world      # then carry ["build/test-world"] with the device command
# (b) python -m bench.gpu --json $OUT/gpu.json: every pipeline in float16 and bfloat16 at batch 1, 16, 64 and 256
#     (a few minutes), clipchat_graphs among them: p50 ms per photo end to end at batch 1, peak GPU memory per row.
#     Arguments to this script go to bench.gpu, e.g. `--batches 1 16 --dtypes float16` for a shorter run.
#
# Both parts always run (one device run is all there is); the exit status is the tests' or else the bench's.
set -uo pipefail

OUT=${OUT:-$PWD/gpu-check}
WORLD=${CLIPCHAT_TEST_WORLD:-$PWD/build/test-world}
mkdir -p "$OUT"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/device.txt"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'CUDA', torch.version.cuda,
'available', torch.cuda.is_available(), 'transformers', transformers.__version__)" | tee -a "$OUT/device.txt"

if [ ! -f "$WORLD/.complete" ]; then
    echo "no finished test world at $WORLD: building it (CPU, minutes)"
    start=$SECONDS
    python3 -m tests.world build "$WORLD" >"$OUT/world.log" 2>&1 || { echo "world build failed: $OUT/world.log"; exit 1; }
    echo "world built in $((SECONDS - start)) s"
fi

CLIPCHAT_TEST_WORLD=$WORLD python3 -m pytest -q -rs -p no:cacheprovider tests/test_graphs.py 2>&1 \
    | tee "$OUT/test_graphs.log"
tests=${PIPESTATUS[0]}

python3 -m bench.gpu --json "$OUT/gpu.json" "$@" 2>&1 | tee "$OUT/bench.log"
bench=${PIPESTATUS[0]}

echo "tests exit $tests, bench exit $bench; results in $OUT"
[ "$tests" -ne 0 ] && exit "$tests"
exit "$bench"
