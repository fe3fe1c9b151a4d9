"""Arguments of one of TRL's ``examples/scripts/*.py``, checked by the parser those scripts start with.

TRL's example scripts are in neither its wheel nor its sdist, so a documented ``python dpo_vlm.py ...`` cannot run
here; each of them begins with ``TrlParser((ScriptArguments, <Trainer>Config, ModelConfig)).parse_args_and_config()``.
This builds that parser for the script's trainer, in the environment that runs it, and parses the arguments with
it (unknown options and wrong types fail); the dataclasses are not built (their checks look at the hardware: bf16
without a GPU), nothing is loaded.

    python tests/scripts/check_trl_example_args.py dpo_vlm.py ARG...
"""

from __future__ import annotations

import os
import sys

CONFIGS = {"dpo": "DPOConfig", "online_dpo": "OnlineDPOConfig", "grpo": "GRPOConfig", "sft": "SFTConfig"}


def main() -> int:
    script, *args = sys.argv[1:]
    trainer = os.path.basename(script).removesuffix(".py").removesuffix("_vlm")
    import trl

    parser = trl.TrlParser((trl.ScriptArguments, getattr(trl, CONFIGS[trainer]), trl.ModelConfig))
    parser.parse_args(args)
    print(f"arguments parsed: {script} {' '.join(args)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
