#!/usr/bin/env bash
# Serve a UnifiedReward judge with SGLang's OpenAI-compatible server.
# NOT VERIFIED HERE: SGLang cannot run on the machines this package is tested on.
#
#   MODEL=CodeGoat24/UnifiedReward-7b-v1.5 GPUS=2 bash serve_unifiedreward_sglang.sh
#
# LLaVA-OneVision checkpoints (UnifiedReward-7b, -7b-v1.5, Think-7b) need the chatml-llava template,
# as in Flow-GRPO's launcher. Prefix (radix) caching is on by default in SGLang.
set -euo pipefail

MODEL=${MODEL:-CodeGoat24/UnifiedReward-7b-v1.5}
GPUS=${GPUS:-1}
TP=${TP:-1}
HOST=${HOST:-127.0.0.1}  # HOST=0.0.0.0 exposes the server: set API_KEY then
PORT=${PORT:-8080}
CONTEXT=${CONTEXT:-16384}
DP=$((GPUS / TP))

EXTRA=()
[ -n "${API_KEY:-}" ] && EXTRA+=(--api-key "$API_KEY")  # clients: --api-key / UNIFIEDREWARD_API_KEY
case "${MODEL,,}" in
  *qwen*) ;;
  *) EXTRA+=(--chat-template chatml-llava) ;;
esac

CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-$(seq -s, 0 $((GPUS - 1)))} exec python -m sglang.launch_server \
  --model-path "$MODEL" \
  --served-model-name UnifiedReward \
  --host "$HOST" --port "$PORT" \
  --tp-size "$TP" --dp-size "$DP" \
  --context-length "$CONTEXT" \
  --mem-fraction-static 0.85 \
  "${EXTRA[@]}"
