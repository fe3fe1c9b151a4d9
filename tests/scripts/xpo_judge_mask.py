"""TRL 0.24's own ``XPOTrainer._compute_judge`` with :class:`UnifiedRewardPairwiseJudge`: what a -1 becomes.

XPO judges (policy completion, reference completion) pairs and turns the ranks into its ``chosen_mask``
(True: the policy's completion is chosen). The judge is scripted (mocked: the verdicts must be known): an
answer "qN ..." has quality N, an answer without one makes the judgement fail. The trainer is not built
(XPO needs a policy, a reference and generation for that); ``_compute_judge`` is called on a stand-in
holding the toy policy's tokenizer, which is all that method reads.

    .venv-llamafactory/bin/python tests/scripts/xpo_judge_mask.py TOY_WORLD_DIR   # prints RESULT {...}
"""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace

import integrations.trl  # noqa: F401  (trl<0.29 import-guard fix, before `import trl`)
from integrations.trl.judge import UnifiedRewardPairwiseJudge
from reward_core import RewardResult, Status


class ScriptedPairJudge:
    def compare_batch(self, template, items, swap=False, mode="generate"):
        out = []
        for item in items:
            a, b = item.fields["answer1"], item.fields["answer2"]
            if not (a.startswith("q") and b.startswith("q")):
                out.append(RewardResult.failure(Status.PARSE_ERROR, "no verdict"))
            else:
                out.append(RewardResult(Status.OK, winner=1 if a[1] > b[1] else 2 if b[1] > a[1] else 0))
        return out


def main(toy_world: str) -> None:
    from transformers import AutoTokenizer
    from trl import XPOTrainer

    tokenizer = AutoTokenizer.from_pretrained(f"{toy_world}/policy-qwen2_5_vl")
    prompts = ["p1", "p2", "p3"]
    policy = ["q5 good", "q1 poor", "broken"]  # policy wins, reference wins, judge fails
    reference = ["q1 poor", "q5 good", "q3 fine"]
    judge = UnifiedRewardPairwiseJudge(ScriptedPairJudge(), media_lookup={p: ["a.png"] for p in prompts}, seed=0)
    stand_in = SimpleNamespace(processing_class=tokenizer, judge=judge)

    def data(texts):
        return {"raw": prompts, "input_ids": tokenizer(texts, padding=True, return_tensors="pt")["input_ids"]}

    mask = XPOTrainer._compute_judge(stand_in, data(policy), data(reference), context_length=0)
    print("RESULT " + json.dumps({"policy_chosen": mask.tolist(), "failed": judge.failed, "unranked": judge.unranked}))


if __name__ == "__main__":
    main(sys.argv[1])
