"""Shared test setup: offline Hugging Face, few threads, and one toy world per session."""

import os

for _name, _value in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "OMP_NUM_THREADS": "2",
    "MKL_NUM_THREADS": "2",
    "WANDB_MODE": "disabled",
    "TRL_EXPERIMENTAL_SILENCE": "1",
}.items():
    os.environ.setdefault(_name, _value)

import pytest  # noqa: E402

from unifiedreward.toy import build_world, load_world  # noqa: E402
from servers import toy_server, vllm_server  # noqa: E402,F401 (one real server of each kind per session)


@pytest.fixture(scope="session")
def toy_world(tmp_path_factory) -> dict:
    """Manifest (absolute paths) of the toy world: reuses a complete ``$UNIFIEDREWARD_TOY_WORLD``, else builds once."""
    reuse_dir = os.environ.get("UNIFIEDREWARD_TOY_WORLD")
    if reuse_dir:
        return load_world(reuse_dir) or build_world(reuse_dir)
    return build_world(tmp_path_factory.mktemp("toy-world"))
