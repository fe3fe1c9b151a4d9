"""Setup shared by the TRL examples: toy-world defaults, JSONL rows and the UnifiedReward judge."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from unifiedreward.cli.common import load_judge


def apply_toy_world(args: argparse.Namespace) -> None:
    """With ``--toy-world DIR``: unset policy, judge and prompts come from the world's manifest, on CPU.

    The toy judge runs in logit mode unless ``--mode`` says otherwise (its generated text is not a verdict).
    """
    if not args.toy_world:
        return
    manifest = json.loads((Path(args.toy_world) / "manifest.json").read_text(encoding="utf-8"))
    args.policy = args.policy or manifest["policy_model"]
    args.reward_model = args.reward_model or manifest["reward_model"]
    args.prompts = args.prompts or manifest["data"]["und_prompts"]
    args.mode = args.mode or "logit"
    args.use_cpu = True


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_reward_judge(args: argparse.Namespace):
    """The ``UnifiedReward`` of ``--reward-server`` or ``--reward-model`` (on CPU with ``--use-cpu``)."""
    return load_judge(args.reward_model, args.reward_server, device="cpu" if args.use_cpu else None)


def run_settings(args: argparse.Namespace) -> dict:
    """Trainer config values every example shares: log each step, save no checkpoints, no trackers, fp32."""
    return {"logging_steps": 1, "save_strategy": "no", "report_to": [], "bf16": False, "use_cpu": args.use_cpu}
