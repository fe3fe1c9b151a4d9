#!/usr/bin/env bash
# UnifiedReward's DiffusionDPO recipe (SDXL-Turbo) with this package: candidates -> sift -> Diffusion-DPO.
# Needs a GPU and the Hub (or local copies). Usage: bash examples/diffusers/sdxl_turbo_dpo.sh prompts.jsonl
set -euo pipefail
PROMPTS=${1:?prompts.jsonl with one {"prompt": ...} per line}
WORK=${WORK:-turbo_dpo}
REWARD_MODEL=${REWARD_MODEL:-CodeGoat24/UnifiedReward-qwen-7b}

python -m integrations.diffusers.generate_candidates \
  --pretrained_model_name_or_path stabilityai/sdxl-turbo --torch_dtype float16 \
  --prompts "$PROMPTS" --num_images_per_prompt 10 --batch_size 10 \
  --num_inference_steps 1 --guidance_scale 0 --height 512 --width 512 --output_dir "$WORK/candidates"

python -m integrations.diffusers.sift_images --candidates_dir "$WORK/candidates" \
  --reward_model "$REWARD_MODEL" --output_dir "$WORK/dpo_data"

accelerate launch integrations/diffusers/train_diffusion_dpo.py \
  --pretrained_model_name_or_path stabilityai/sdxl-turbo \
  --pretrained_vae_model_name_or_path madebyollin/sdxl-vae-fp16-fix \
  --is_turbo --dataset_name "$WORK/dpo_data" --output_dir "$WORK/lora" \
  --resolution 512 --train_batch_size 8 --gradient_accumulation_steps 16 --gradient_checkpointing \
  --max_train_steps 500 --learning_rate 1e-5 --lr_scheduler constant_with_warmup --lr_warmup_steps 20 \
  --beta_dpo 5000 --rank 16 --mixed_precision bf16 --checkpointing_steps 100 \
  --validation_prompts "a red apple on a wooden table" "a cat wearing sunglasses" --validation_steps 100
