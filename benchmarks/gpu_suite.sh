#!/usr/bin/env bash
# GPU suite, one command, under 10 minutes on one GPU: the 7B-shaped scoring benchmark (bf16, flash-attention 2
# when installed, else sdpa), the SD1.5-shaped Diffusion-DPO step (ours vs diffusers' script; needs
# REFERENCE_SCRIPT), and the sift benchmark on a 7B-shaped judge; then one table (suite_table.py).
#
#   bash benchmarks/gpu_suite.sh bench-out/gpu-suite                 # on a GPU machine
#   DEVICE=cpu SIZE=toy bash benchmarks/gpu_suite.sh /tmp/suite      # the same code path at toy size on CPU
#
# Environment: DEVICE (cuda), SIZE (7b | toy), ATTN (auto), PYTHON (python), WORLD (toy world folder, built when
# missing), REFERENCE_SCRIPT (diffusers' examples/research_projects/diffusion_dpo/train_diffusion_dpo.py).
# Each step has its own time limit; a failed or skipped step shows as such in the table, the others still run.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
OUT=${1:-bench-out/gpu-suite}
DEVICE=${DEVICE:-cuda}
SIZE=${SIZE:-7b}
PY=${PYTHON:-python}
mkdir -p "$OUT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
WORLD=${WORLD:-$OUT/world}
ATTN=${ATTN:-$("$PY" -c 'import importlib.util as u; print("flash_attention_2" if u.find_spec("flash_attn") else "sdpa")')}
if [ "$SIZE" = 7b ]; then
  JUDGE=(--config-7b --dtype bfloat16 --attn "$ATTN"); ITEMS=32; PROMPTS=4; DPO=(); LIMITS=(200 170 200)
  TASKS=(pairwise pointwise)
else
  JUDGE=(--dtype float32 --attn sdpa); ITEMS=2; PROMPTS=1; DPO=(--steps 2 --warmup_steps 1); LIMITS=(300 300 300)
  TASKS=(pairwise)  # the code path only: the pointwise upstream loop is the slow part on CPU
fi

step() {  # name, limit (s), command...
  local name=$1 limit=$2; shift 2
  echo "== $name (limit ${limit}s)"
  if timeout "$limit" "$@" > "$OUT/$name.log" 2>&1; then echo "ok" > "$OUT/$name.status"
  else echo "failed (exit $?): see $OUT/$name.log" > "$OUT/$name.status"; tail -5 "$OUT/$name.log"; fi
}

step scoring "${LIMITS[0]}" "$PY" "$HERE/scoring_throughput.py" --device "$DEVICE" "${JUDGE[@]}" --items "$ITEMS" \
  --tasks "${TASKS[@]}" --batch-size 16 --world "$WORLD" --json "$OUT/scoring.json"
if [ -n "${REFERENCE_SCRIPT:-}" ]; then
  step dpo_step "${LIMITS[1]}" "$PY" "$HERE/diffusion_dpo_step.py" --reference_script "$REFERENCE_SCRIPT" \
    --device "$DEVICE" "${DPO[@]}" --work_dir "$OUT/dpo-work" --json "$OUT/dpo_step.json"
else
  echo "skipped: set REFERENCE_SCRIPT to diffusers' train_diffusion_dpo.py" > "$OUT/dpo_step.status"
fi
step sift "${LIMITS[2]}" "$PY" "$HERE/sift_throughput.py" --device "$DEVICE" "${JUDGE[@]}" --prompts "$PROMPTS" \
  --world "$WORLD" --json "$OUT/sift.json"
"$PY" "$HERE/suite_table.py" "$OUT" | tee "$OUT/table.md"
