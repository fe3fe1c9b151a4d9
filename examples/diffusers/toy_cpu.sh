#!/usr/bin/env bash
# The whole chain offline on the toy world, on CPU, in a few minutes:
# tiny SD candidates -> toy UnifiedReward (tiny random Qwen2.5-VL: most verdicts fail to parse, which the sift
# reports instead of inventing preferences) -> Diffusion-DPO under accelerate.
set -euo pipefail
WORK=${WORK:-demo-work/diffusers}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} HF_HUB_OFFLINE=1
unifiedreward toy build "$WORK/world" > "$WORK.manifest.json" 2>/dev/null || python -c "from reward_core.toy import build_world; build_world('$WORK/world')"

python -m integrations.diffusers.generate_candidates --pretrained_model_name_or_path "$WORK/world/sd" \
  --prompts "$WORK/world/data/gen_prompts.jsonl" --max_prompts 16 --num_images_per_prompt 4 \
  --num_inference_steps 2 --output_dir "$WORK/candidates" --device cpu

python -m integrations.diffusers.sift_images --candidates_dir "$WORK/candidates" \
  --reward_model "$WORK/world/reward-qwen2_5_vl" --mode logit --output_dir "$WORK/dpo_data" --device cpu

accelerate launch --config_file examples/diffusers/accelerate_cpu.yaml integrations/diffusers/train_diffusion_dpo.py \
  --pretrained_model_name_or_path "$WORK/world/sd" --dataset_name "$WORK/dpo_data" --output_dir "$WORK/lora" \
  --resolution 32 --train_batch_size 2 --max_train_steps 10 --learning_rate 1e-4 --rank 4 \
  --mixed_precision no --report_to none --checkpointing_steps 5
