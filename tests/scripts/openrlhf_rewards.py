"""Rewards of UnifiedReward's OpenRLHF ``reward_func.py`` through OpenRLHF's own rollout code.

``SingleTurnAgentExecutor(remote_rm_url=REWARD_FUNC_PY)`` loads the file as ``--remote_rm_url`` does and ``execute()``
runs a rollout: tokenise the prompt, generate, decode prompt + response into the query, call ``reward_func``. The
generation engine is the one stand-in (vLLM on a GPU cannot run here): it answers each prompt with the completion
given in ROWS.json. Usage: openrlhf_rewards.py REWARD_FUNC_PY TOKENIZER ROWS.json -> JSON rewards per row.
"""

import asyncio
import json
import sys
from types import SimpleNamespace

from transformers import AutoTokenizer
from openrlhf.utils.agent import SingleTurnAgentExecutor

reward_func_py, tokenizer_path, rows_file = sys.argv[1:4]
tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
rows = json.loads(open(rows_file).read())


class ScriptedEngine:
    """Stands in for OpenRLHF's vLLM engine: the row's completion, then end of turn."""

    def __init__(self, completion: str):
        self.ids = tokenizer(completion + "<|im_end|>", add_special_tokens=False)["input_ids"]

    async def generate(self, prompt_token_ids, sampling_params, multi_modal_data=None):
        output = SimpleNamespace(token_ids=self.ids, finish_reason="stop", logprobs=None)
        return SimpleNamespace(outputs=[output])


async def main():
    executor = SingleTurnAgentExecutor(remote_rm_url=reward_func_py)
    params = SimpleNamespace(max_tokens=64, logprobs=None)
    out = []
    for row in rows:
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": row["question"]}], tokenize=False,
                                               add_generation_prompt=True)
        result = await executor.execute(prompt, row["label"], params, 512, tokenizer, ScriptedEngine(row["completion"]))
        reward = result["reward"]
        out.append({"reward": None if reward is None else float(reward[0]),
                    "failed": float(result["extra_logs"]["unifiedreward_failed"][0]) if result["extra_logs"] else None})
    print(json.dumps(out))


asyncio.run(main())
