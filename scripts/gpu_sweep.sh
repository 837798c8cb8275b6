#!/usr/bin/env bash
# Issue 3: measure the real SD architectures (random weights) on the lent GPU within a fixed time budget.
# Eager mode for every model first, then the optimised mode while time remains; resumable, nothing lost.
#
# On the device machine (repo root, carry .whl with the diffusers wheel):
#   bash scripts/gpu_sweep.sh                   # traces -> traces/profiles/h100/ (h200/ on an H200), copies + log -> $OUT
# On a CPU, as a test of the script itself:
#   GPU_SWEEP_MODELS=tiny GPU_SWEEP_DEVICE=cpu GPU_SWEEP_STEPS=1,2 GPU_SWEEP_BATCH=1,2 \
#   GPU_SWEEP_MODES=eager OUT=/tmp/out GPU_SWEEP_TRACE_DIR=/tmp/traces bash scripts/gpu_sweep.sh
# Rerunning resumes: points already in the traces under GPU_SWEEP_TRACE_DIR are skipped.
set -uo pipefail

MODELS=${GPU_SWEEP_MODELS:-"sd-1.5 sd-2.1 sdxl sd3.5-medium"}
MODES=${GPU_SWEEP_MODES:-"eager compile"}
STEPS=${GPU_SWEEP_STEPS:-1,2,5,10,20,25,30,40,42,50}  # 25 and 42 are the held-out validation steps
BATCH=${GPU_SWEEP_BATCH:-1,2,4,8}
COMPILE_BATCH=${GPU_SWEEP_COMPILE_BATCH:-1,2}  # each batch size is one more compilation (~1 min, assumption)
DEVICE=${GPU_SWEEP_DEVICE:-cuda}
BUDGET_S=${GPU_SWEEP_BUDGET_S:-540}      # whole script; leaves a minute of a 10-minute call for start/transfer
BUILD_MARGIN_S=${GPU_SWEEP_BUILD_S:-45}  # a model is not started with less left than this + 20 s (SD 3.5 built in ~40 s on the H100)
WINDOW_S=${GPU_SWEEP_WINDOW_S:-2}        # just long enough for the NVML counter (20-100 ms updates)
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)
case "$gpu" in  # the device tool may hand out an H200 instead: its traces must not land in h100/
  *H100*) slug=h100 ;; *H200*) slug=h200 ;; "") slug=cpu ;; *) slug=$(echo "$gpu" | tr 'A-Z ' 'a-z-') ;;
esac
TRACE_DIR=${GPU_SWEEP_TRACE_DIR:-traces/profiles/$slug}
OUT=${OUT:-out}
PYTHON=${PYTHON:-python3}
EXTRA=${GPU_SWEEP_EXTRA:-}
WHEELS=${GPU_SWEEP_WHEELS:-.whl}          # carried wheels (the GPU image lacks diffusers)

start=$(date +%s)
mkdir -p "$OUT" "$TRACE_DIR"
log="$OUT/gpu_sweep.log"
say() { echo "[gpu_sweep $(($(date +%s) - start))s] $*" | tee -a "$log"; }

if compgen -G "$WHEELS/*.whl" >/dev/null; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl \
    || { say "wheel install failed"; exit 1; }
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
[ "$DEVICE" = cpu ] && EXTRA="$EXTRA --allow-no-energy"

say "device=$DEVICE models=[$MODELS] modes=[$MODES] steps=$STEPS batch=$BATCH budget=${BUDGET_S}s"
if [ "$DEVICE" = cuda ]; then
  nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu,clocks.sm --format=csv 2>&1 | tee -a "$log"
fi
"$PYTHON" -c "import torch, diffusers, transformers; print('torch', torch.__version__, 'diffusers', diffusers.__version__, 'transformers', transformers.__version__)" 2>&1 | tee -a "$log"

pack() {  # the device's working tree does not come back: $OUT does (at most 8 files), so one archive
  tar -czf "$OUT/traces.tar.gz" -C "$(dirname "$TRACE_DIR")" "$(basename "$TRACE_DIR")" 2>>"$log"
}

status=0
for mode in $MODES; do
  for model in $MODELS; do
    left=$((BUDGET_S - ($(date +%s) - start)))
    if [ "$left" -lt $((BUILD_MARGIN_S + 20)) ]; then
      say "budget spent: $model/$mode not started (rerun to resume)"
      continue
    fi
    batch=$BATCH
    [ "$mode" = eager ] || batch=$COMPILE_BATCH
    say "$model $mode: up to ${left}s"
    # SIGINT first: profiling.run stops cleanly; every finished point is already in the trace.
    # shellcheck disable=SC2086
    timeout -s INT -k 20 "$left" "$PYTHON" -m profiling.run --model "$model" --weights random --device "$DEVICE" \
      --mode "$mode" --steps "$STEPS" --batch "$batch" --min-window-s "$WINDOW_S" --min-repeats 1 --warmup 2 \
      --idle-s 2 --max-time-s $((left - 15)) --no-progress --out "$TRACE_DIR/$model.csv" $EXTRA \
      2>&1 | tee -a "$log"
    rc=${PIPESTATUS[0]}
    [ "$rc" -ne 0 ] && { say "$model $mode exited $rc"; status=1; }
    pack
  done
done
pack
say "done; traces in $TRACE_DIR and $OUT/traces.tar.gz"
exit $status
