"""LLaMA-Factory's own SFT dataset loading on converted datasets (run in ``.venv-llamafactory``).

    python tests/scripts/llamafactory_load_dataset.py MODEL DATASET_DIR MEDIA_DIR OUT_DIR NAME[,NAME...]

``get_dataset`` reads ``DATASET_DIR/dataset_info.json``, aligns the sharegpt columns, resolves media
under ``MEDIA_DIR`` and tokenizes with the ``qwen2_vl`` template, whose multimodal plugin checks that
the placeholders match the media and expands each ``<video>`` into its video tokens. Then every row's
videos go through the plugin's processor. Prints ``RESULT {json}``: per row, its frames per video,
the video grids (t, h, w) and the video tokens in ``input_ids`` against the grids' count.
"""

from __future__ import annotations

import json
import sys


def main(model: str, dataset_dir: str, media_dir: str, output_dir: str, names: str) -> None:
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    model_args, data_args, training_args, _, _ = get_train_args({
        "model_name_or_path": model, "trust_remote_code": False, "stage": "sft", "do_train": True,
        "finetuning_type": "lora", "template": "qwen2_vl", "dataset_dir": dataset_dir, "media_dir": media_dir,
        "dataset": names, "cutoff_len": 8192, "overwrite_cache": True, "output_dir": output_dir,
        "video_max_pixels": 3136, "video_min_pixels": 3136, "report_to": "none",
    })
    modules = load_tokenizer(model_args)
    tokenizer, processor = modules["tokenizer"], modules["processor"]
    template = get_template_and_fix_tokenizer(tokenizer, data_args)
    dataset = get_dataset(template, model_args, data_args, training_args, stage="sft", **modules)["train_dataset"]
    video_token = tokenizer.convert_tokens_to_ids("<|video_pad|>")
    merge = processor.image_processor.merge_size ** 2
    rows = []
    for example in dataset:
        videos = example["videos"] or []
        grids = []
        if videos:
            inputs = template.mm_plugin._get_mm_inputs([], videos, [], processor)
            grids = inputs["video_grid_thw"].tolist()
        rows.append({"frames": [len(video) for video in videos], "grids": grids,
                     "video_tokens": example["input_ids"].count(video_token),
                     "grid_tokens": sum(t * h * w // merge for t, h, w in grids)})
    print("RESULT " + json.dumps({"rows": rows}))


if __name__ == "__main__":
    main(*sys.argv[1:6])
