#!/usr/bin/env bash
# Serve any checkpoint with `transformers serve` (CPU or one GPU; no logprobs, so generate mode only).
# This is the server the test suite and benchmarks/http_throughput.py run against.
#
#   MODEL=path/to/reward-qwen2_5_vl PORT=8080 bash serve_transformers.sh
set -euo pipefail

MODEL=${MODEL:?set MODEL to a checkpoint path or hub id}
PORT=${PORT:-8080}
DEVICE=${DEVICE:-auto}

exec transformers serve "$MODEL" --host 127.0.0.1 --port "$PORT" --device "$DEVICE" --dtype auto
