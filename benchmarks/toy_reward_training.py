"""Train the toy UnifiedReward judge with a shipped LLaMA-Factory recipe and measure held-out accuracy.

    python benchmarks/toy_reward_training.py --json bench-out/toy_reward_training.json

Pipeline: toy quality task (``unifiedreward.toy.tasks``) -> ``data_converters.convert_toy_judge``
(UnifiedReward prompts from the registry, "Image 1 is better." / "Final Score: 4" targets) ->
``llamafactory-cli train integrations/llamafactory/recipes/qwen2_5vl_full_sft.yaml <CPU + toy
overrides>`` in ``.venv-llamafactory`` -> ``UnifiedReward.from_pretrained`` on the checkpoint ->
greedy verdicts on held-out pairs / images parsed by ``reward_core.parsers``.
The JSON holds ``pairwise_accuracy``, ``pointwise_accuracy`` (exact match of the parsed score),
``pointwise_within_one_accuracy``, ``train_seconds``, the load average and the setup.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from integrations.llamafactory.toy_proof import (  # noqa: E402
    ToyTrainingSetup,
    evaluate,
    train_toy_reward_model,
    write_json,
)

logger = logging.getLogger("toy_reward_training")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", required=True, help="where to write the results")
    parser.add_argument("--work-dir", help="keep model, data and checkpoint here (default: a temp dir, removed)")
    parser.add_argument("--recipe", default="qwen2_5vl_full_sft", help="shipped recipe name")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for training")
    for field in dataclasses.fields(ToyTrainingSetup):
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=type(field.default), default=field.default)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = parse_args(argv)
    setup = ToyTrainingSetup(**{f.name: getattr(args, f.name) for f in dataclasses.fields(ToyTrainingSetup)})
    work_dir = Path(args.work_dir or tempfile.mkdtemp(prefix="toy-reward-"))
    try:
        load_before = os.getloadavg()
        start = time.perf_counter()
        run, data = train_toy_reward_model(work_dir, setup, recipe=args.recipe, threads=args.threads)
        if not run.ok:
            print(run.log[-6000:], file=sys.stderr)
            return 1
        accuracy = evaluate(run.output_dir, data)
        results = {
            **accuracy.to_dict(),
            "train_seconds": round(run.seconds, 1),  # llamafactory-cli wall time: startup + preprocessing + loop
            "train_loop_seconds": json.loads((Path(run.output_dir) / "all_results.json").read_text())["train_runtime"],
            "total_seconds": round(time.perf_counter() - start, 1),
            "recipe": args.recipe,
            "threads": args.threads,
            "cpu_count": os.cpu_count(),
            # 1-minute load average before and after training: other jobs on the machine slow the run down
            "load_average_1min": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
            "machine": platform.machine(),
            "setup": dataclasses.asdict(setup),
        }
        write_json(args.json, results)
        logger.info("pairwise %.3f, pointwise %.3f, training %.0f s", accuracy.pairwise_accuracy,
                    accuracy.pointwise_accuracy, run.seconds)
        return 0
    finally:
        if not args.work_dir:
            shutil.rmtree(work_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
