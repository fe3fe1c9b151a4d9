#!/usr/bin/env bash
# The Diffusion-DPO toy proof, offline on CPU in about a minute per seed (see examples/diffusers/toy_dpo_proof.py):
# toy world -> its SD pre-trained on the toy scenes (python -m unifiedreward.toy.sd_pretrain) -> 4 candidates per
# prompt (generate_candidates) -> sift with a brightness rule judge behind the UnifiedReward API (sift_images) ->
# accelerate launch --config_file examples/diffusers/accelerate_cpu.yaml integrations/diffusers/train_diffusion_dpo.py
# (LoRA, --eval_split test) -> held-out implicit accuracy before/after, and held-out prompts drawn by the tuned LoRA.
# Controls: --preference darker (the opposite preference), --shuffle_train_labels (random labels: chance).
set -euo pipefail
WORK=${WORK:-demo-work/diffusers-toy-dpo}
export HF_HUB_OFFLINE=1
python examples/diffusers/toy_dpo_proof.py --work_dir "$WORK" --seeds 0 1 2 --json "$WORK/proof.json" "$@"
