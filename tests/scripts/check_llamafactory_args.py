"""``llamafactory-cli train RECIPE.yaml key=value ...``'s arguments, checked by LLaMA-Factory's own parser only.

Run in ``.venv-llamafactory``: the recipe and overrides are merged as ``llamafactory-cli`` merges them
(``read_args``) and parsed by the argument parser of LLaMA-Factory's training dataclasses (``_TRAIN_ARGS``): an
unknown key or a value of the wrong type fails. The dataclasses are not built (their checks look at the hardware,
e.g. bf16 on a machine without a GPU), and nothing is loaded or trained. Used by tests/test_docs.py for documented commands that need GPUs.
"""

from __future__ import annotations

import sys

from llamafactory.hparams.parser import _TRAIN_ARGS, HfArgumentParser, read_args


def main() -> int:
    command, *args = sys.argv[1:]
    if command != "train":
        raise SystemExit(f"only `train` is checked, not {command!r}")
    sys.argv = [sys.argv[0], *args]
    values = read_args()
    HfArgumentParser(_TRAIN_ARGS).parse_args([f"--{key}={value}" for key, value in values.items() if value is not None])
    print(f"arguments parsed: train {' '.join(args)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
