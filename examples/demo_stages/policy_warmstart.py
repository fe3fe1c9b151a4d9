"""Warm-start SFT of a small image-text-to-text policy on (image, question, answer) rows, saving the result.

    python examples/demo_stages/policy_warmstart.py --policy POLICY --data rows.jsonl --output-dir warm

The toy policy is a random network: its samples are gibberish the judge cannot rank. A few dozen steps on
a mix of correct, wrong and badly formed answers (``toy_inputs.write_policy_warmstart``) give it samples that
range from good to bad, the starting point the demo's sift -> DPO then improves. Prompts are built exactly as
``unifiedreward sift --policy`` builds them (``reward_core.media.build_messages``, chat template with the
generation prompt); the loss covers the answer tokens and the end-of-turn token only.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
from pathlib import Path

from unifiedreward.toy.sft import encode

logger = logging.getLogger("policy_warmstart")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--policy", required=True, help="policy checkpoint to train")
    parser.add_argument("--data", type=Path, required=True, help="JSONL rows: image (relative to --media-dir), question, answer")
    parser.add_argument("--media-dir", type=Path, help="root of the rows' image paths (default: the data file's folder)")
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    rows = [json.loads(line) for line in args.data.read_text(encoding="utf-8").splitlines() if line.strip()]
    media_dir = args.media_dir or args.data.parent
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    processor = AutoProcessor.from_pretrained(args.policy)
    model = AutoModelForImageTextToText.from_pretrained(args.policy, dtype=torch.float32).to(args.device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate)
    losses = []
    for step in range(args.steps):
        batch = encode(processor, rng.sample(rows, min(args.batch_size, len(rows))), media_dir).to(args.device)
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(round(loss.item(), 4))
        if step % 10 == 0 or step == args.steps - 1:
            logger.info("step %d/%d loss %.4f", step + 1, args.steps, losses[-1])
    args.output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.output_dir)
    processor.save_pretrained(args.output_dir)
    report = {"rows": len(rows), "steps": args.steps, "losses": losses}
    (args.output_dir / "warmstart_report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
