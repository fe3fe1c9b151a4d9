"""Released UnifiedReward checkpoints: which prompt family each one was trained on, and how to run it.

``resolve(id_or_path)`` finds a checkpoint's :class:`Checkpoint` by hub id (``CodeGoat24/...`` or the bare
name), by a local folder named after one (a download or a hub-cache snapshot), or from the folder's
``config.json`` (an unregistered Qwen-VL judge gets the classic 1.0 prompts). ``default_template`` picks
the template for a task and template mode; ``check_template`` refuses a template of the other prompt
format (LLaVA prompts carry literal ``<image>`` tokens that a Qwen judge would read as text).
Ids and families: upstream-unifiedreward.md §(g); chat-template options: §(c) (every qwen35 server runs
with thinking off).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from reward_core.prompts import Template, get_template

logger = logging.getLogger(__name__)

HUB_ORG = "CodeGoat24"
QWEN, LLAVA = "qwen", "llava"  # prompt formats: media as chat items / literal <image> tokens in the text

# Classic 1.0 prompts (Qwen wording): every Qwen generation still answers them.
_CLASSIC = {
    ("image_generation", "pair_rank"): "image_generation.pair_rank.v1",
    ("image_generation", "point_score"): "image_generation.point_score.v1",
    ("image_generation", "multi_score"): "image_generation.point_score_acs.v1.5",
    ("video_generation", "pair_rank"): "video_generation.pair_rank.v1",
    ("video_generation", "point_score"): "video_generation.point_score.v1",
    ("image_understanding", "pair_rank"): "image_understanding.pair_rank.v1",
    ("image_understanding", "point_score"): "image_understanding.point_score.v1",
    ("video_understanding", "pair_rank"): "video_understanding.pair_rank.v1",
    ("video_understanding", "point_score"): "video_understanding.point_score.v1",
}
_V2 = {
    **_CLASSIC,
    ("image_generation", "pair_score"): "image_generation.pair_score.v2",
    ("image_generation", "multi_score"): "image_generation.point_score_acs.v2",
    ("video_generation", "pair_score"): "video_generation.pair_score.v2",
    ("video_generation", "multi_score"): "video_generation.point_score_aps.v2",
}
_EDIT = {
    **_V2,  # Edit checkpoints are trained from 2.0 on T2I + edit data; T2I prompts are unchanged
    ("image_edit", "pair_rank"): "edit.pair_rank",
    ("image_edit", "pair_score"): "edit.pair_score",
    ("image_edit", "edit_point_score"): "edit.point_score_instruction_following",
}


def _think(cot: str) -> dict[tuple[str, str], str]:
    """Think checkpoints: CoT pair rank (``cot``: "think" or "think.qwen3"), the 1.0 prompts for the rest
    (the maintainer's advice for pointwise use, issue #43)."""
    return {
        **_CLASSIC,
        **{(task, "cot_pair_rank"): f"{cot}.{task}.pair_rank" for task in (
            "image_generation", "video_generation", "image_understanding", "video_understanding")},
    }  # fmt: skip


_FLEX = {
    ("image_generation", "flex_pair_rank"): "flex.image_generation.pair_rank",
    ("video_generation", "flex_pair_rank"): "flex.video_generation.pair_rank",
}
_LLAVA_V1 = {
    ("image_generation", "pair_rank"): "image_generation.pair_rank.v1.llava",
    ("image_generation", "point_score"): "image_generation.point_score.v1.llava",
    ("video_generation", "pair_rank"): "video_generation.pair_rank.v1.llava",
    ("video_generation", "point_score"): "video_generation.point_score.v1.llava",
    ("image_understanding", "pair_rank"): "image_understanding.pair_rank.v1.llava",
    ("image_understanding", "point_score"): "image_understanding.point_score.v1.llava",
    ("video_understanding", "pair_rank"): "video_understanding.pair_rank.v1.llava",
    ("video_understanding", "point_score"): "video_understanding.point_score.v1.llava",
}
_LLAVA_V15 = {
    **_LLAVA_V1,
    ("image_generation", "point_score"): "image_generation.point_score.sglang_v1.5",
    ("image_generation", "multi_score"): "image_generation.point_score_acs.v1.5.llava",
}
_LLAVA_THINK = {
    **_LLAVA_V1,
    **{(task, "cot_pair_rank"): f"think.{task}.pair_rank.llava" for task in (
        "image_generation", "video_generation", "image_understanding", "video_understanding")},
}  # fmt: skip

# The pairwise template mode ``compare()`` uses when none is named, per generation.
_PAIR_MODE = {"think": "cot_pair_rank", "flex": "flex_pair_rank"}
THINK_MIN_NEW_TOKENS = 1024  # a full multi-dimension CoT overruns upstream's 512 (Think image generation)


@dataclass(frozen=True)
class Checkpoint:
    """One released (or local) UnifiedReward judge and how upstream runs it."""

    name: str  # hub name without the org, e.g. "UnifiedReward-2.0-qwen3vl-8b"
    generation: str  # "1.0" | "2.0" | "think" | "edit" | "flex"
    backbone: str  # "llava-onevision" | "qwen2.5-vl" | "qwen3-vl" | "qwen3.5"
    templates: dict[tuple[str, str], str] = field(repr=False)  # (task, template mode) -> template key
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)  # e.g. {"enable_thinking": False}
    min_new_tokens: int | None = None  # floor on the generation budget (CoT outputs)
    registered: bool = True  # False: an unregistered local judge, given the classic defaults

    @property
    def hub_id(self) -> str:
        return f"{HUB_ORG}/{self.name}"

    @property
    def prompt_format(self) -> str:
        return LLAVA if self.backbone == "llava-onevision" else QWEN

    @property
    def in_process(self) -> bool:
        """Whether transformers can load it (LLaVA-NeXT-format checkpoints need SGLang / LLaVA-NeXT)."""
        return self.prompt_format == QWEN

    @property
    def pair_mode(self) -> str:
        return _PAIR_MODE.get(self.generation, "pair_rank")

    def default_template(self, task: str, mode: str) -> Template:
        """The template upstream uses for ``task`` and template ``mode`` on this checkpoint."""
        key = self.templates.get((task, mode))
        if key is None:
            known = ", ".join(f"{t}/{m}" for t, m in sorted(self.templates))
            raise ValueError(f"{self.name} has no default {mode} template for {task}; pass a template key (known: {known})")
        return get_template(key)

    def check_template(self, template: Template, force: bool = False) -> None:
        """Raise when ``template`` is written for the other prompt format (unless ``force``)."""
        if force or template_format(template) == self.prompt_format:
            return
        other = "LLaVA (literal <image> tokens in the text)" if self.prompt_format == QWEN else "Qwen (media as chat items)"
        raise ValueError(
            f"template {template.key!r} is a {other} prompt, but {self.name} is a {self.backbone} judge; "
            f"use one of its own templates (e.g. {next(iter(self.templates.values()))!r}) or pass force=True"
        )


def template_format(template: Template) -> str:
    """``"llava"`` for prompts that carry ``<image>`` tokens (LLaVA inference, DPO sift, benchmarks), else ``"qwen"``."""
    llava = (
        "<image>" in template.text
        or "image_tokens" in template.fields
        or template.key.endswith(".llava")
        or template.key.startswith(("dpo.", "preference.", "bench."))
    )
    return LLAVA if llava else QWEN


def _qwen(name: str, generation: str, backbone: str, templates: dict) -> Checkpoint:
    kwargs = {"enable_thinking": False} if backbone == "qwen3.5" else {}
    floor = THINK_MIN_NEW_TOKENS if generation == "think" else None
    return Checkpoint(name, generation, backbone, templates, chat_template_kwargs=kwargs, min_new_tokens=floor)


def _build() -> dict[str, Checkpoint]:
    table = [
        Checkpoint("UnifiedReward-0.5b", "1.0", "llava-onevision", _LLAVA_V1),
        Checkpoint("UnifiedReward-7b", "1.0", "llava-onevision", _LLAVA_V1),
        Checkpoint("UnifiedReward-7b-v1.5", "1.0", "llava-onevision", _LLAVA_V15),
        Checkpoint("UnifiedReward-Think-7b", "think", "llava-onevision", _LLAVA_THINK, min_new_tokens=THINK_MIN_NEW_TOKENS),
    ]
    table += [_qwen(f"UnifiedReward-qwen-{s}", "1.0", "qwen2.5-vl", _CLASSIC) for s in ("3b", "7b", "32b")]
    sizes = {"qwen": ("3b", "7b", "32b", "72b"), "qwen3vl": ("2b", "4b", "8b", "32b"), "qwen35": ("4b", "9b", "27b")}
    backbones = {"qwen": "qwen2.5-vl", "qwen3vl": "qwen3-vl", "qwen35": "qwen3.5"}
    for tag, tag_sizes in sizes.items():
        table += [_qwen(f"UnifiedReward-2.0-{tag}-{s}", "2.0", backbones[tag], _V2) for s in tag_sizes]
    table.append(_qwen("UnifiedReward-Think-qwen-7b", "think", "qwen2.5-vl", _think("think")))
    table += [_qwen(f"UnifiedReward-Think-qwen3vl-{s}", "think", "qwen3-vl", _think("think.qwen3")) for s in sizes["qwen3vl"]]
    table.append(_qwen("UnifiedReward-Think-qwen35-9b", "think", "qwen3.5", _think("think.qwen3")))
    table += [_qwen(f"UnifiedReward-Edit-qwen-{s}", "edit", "qwen2.5-vl", _EDIT) for s in sizes["qwen"]]
    table += [_qwen(f"UnifiedReward-Edit-qwen3vl-{s}", "edit", "qwen3-vl", _EDIT) for s in sizes["qwen3vl"]]
    table.append(_qwen("UnifiedReward-Edit-qwen35-9b", "edit", "qwen3.5", _EDIT))
    table.append(_qwen("UnifiedReward-Flex-qwen3vl-8b", "flex", "qwen3-vl", _FLEX))
    table.append(_qwen("UnifiedReward-Flex-qwen35-9b", "flex", "qwen3.5", _FLEX))
    return {c.name.lower(): c for c in table}


CHECKPOINTS: dict[str, Checkpoint] = _build()
_LLAVA_ARCHITECTURES = ("LlavaQwenForCausalLM", "LlavaLlamaForCausalLM", "LlavaMistralForCausalLM")
_BACKBONE_OF_MODEL_TYPE = {"qwen2_5_vl": "qwen2.5-vl", "qwen2_vl": "qwen2.5-vl", "qwen3_vl": "qwen3-vl",
                           "qwen3_vl_moe": "qwen3-vl", "qwen3_5": "qwen3.5", "qwen3_5_moe": "qwen3.5"}  # fmt: skip


class LlavaCheckpointError(ValueError):
    """A LLaVA-NeXT-format checkpoint: transformers cannot run it in-process."""


def llava_error(name: str) -> LlavaCheckpointError:
    return LlavaCheckpointError(
        f"{name} is a LLaVA-OneVision checkpoint in LLaVA-NeXT format: transformers cannot load it in-process. "
        f"Serve it with SGLang (`unifiedreward serve-cmd {name} --engine sglang`, chat template chatml-llava) and "
        f"judge it with UnifiedReward.from_server(url, checkpoint={name!r}), which picks its LLaVA prompts."
    )


def lookup(name: str) -> Checkpoint | None:
    """The registered checkpoint for a hub id, a bare name, or a path whose folder names one."""
    text = str(name).rstrip("/")
    candidates = [text, text.rsplit("/", 1)[-1]]
    snapshot = re.search(r"models--[^/]+--([^/]+)", text)  # hub cache: .../models--ORG--NAME/snapshots/<hash>
    if snapshot:
        candidates.append(snapshot.group(1))
    for candidate in candidates:
        found = CHECKPOINTS.get(candidate.lower().removeprefix(f"{HUB_ORG.lower()}/"))
        if found is not None:
            return found
    return None


def read_config(path: str | Path) -> dict[str, Any] | None:
    """A local checkpoint's ``config.json`` (``None`` for hub ids and folders without one)."""
    config = Path(path) / "config.json"
    if not config.is_file():
        return None
    try:
        return json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read {config}: {error}") from None


def is_llava_config(config: dict[str, Any]) -> bool:
    architectures = config.get("architectures") or []
    return any(a in _LLAVA_ARCHITECTURES for a in architectures) or str(config.get("model_type", "")).startswith("llava")


def resolve(id_or_path: str | Path, checkpoint: str | None = None) -> Checkpoint:
    """The :class:`Checkpoint` of a hub id or local folder (``checkpoint`` names the family of a local copy).

    A LLaVA-format local folder raises :class:`LlavaCheckpointError` only when asked to load it (see
    ``from_pretrained``); here it resolves to its LLaVA family so servers can use it. An unregistered
    Qwen-VL folder gets the classic 1.0 prompts (and thinking off on Qwen3.5).
    """
    if checkpoint is not None:
        found = lookup(checkpoint)
        if found is None:
            raise ValueError(f"unknown UnifiedReward checkpoint {checkpoint!r}; known: {sorted(c.name for c in CHECKPOINTS.values())}")
        return found
    found = lookup(str(id_or_path))
    config = read_config(id_or_path)
    if config is not None and is_llava_config(config):
        return found if found is not None and found.prompt_format == LLAVA else _unregistered(id_or_path, "llava-onevision")
    if found is not None:
        return found
    by_name = _from_name(str(id_or_path))
    if by_name is not None:  # a size not in the table yet ("UnifiedReward-2.0-qwen35-2b")
        logger.warning("%s is not in the checkpoint table; using the %s %s family by its name",
                       id_or_path, by_name.generation, by_name.backbone)
        return by_name
    model_type = (config or {}).get("model_type", "")
    backbone = _BACKBONE_OF_MODEL_TYPE.get(model_type)
    if config is not None and backbone is None:
        logger.warning("%s: model_type %r is not a Qwen-VL judge; assuming the classic Qwen prompts", id_or_path, model_type)
    return _unregistered(id_or_path, backbone or "qwen2.5-vl")


_NAME = re.compile(r"unifiedreward-(?:(2\.0|think|edit|flex)-)?(qwen|qwen3vl|qwen35)-[\d.]+b$")
_TAG_BACKBONE = {"qwen": "qwen2.5-vl", "qwen3vl": "qwen3-vl", "qwen35": "qwen3.5"}


def _from_name(name: str) -> Checkpoint | None:
    """A released-style name's family, for sizes the table does not list."""
    match = _NAME.search(name.rstrip("/").rsplit("/", 1)[-1].lower())
    if match is None:
        return None
    generation, tag = match.group(1) or "1.0", match.group(2)
    templates = {"1.0": _CLASSIC, "2.0": _V2, "edit": _EDIT, "flex": _FLEX,
                 "think": _think("think" if tag == "qwen" else "think.qwen3")}[generation]  # fmt: skip
    found = _qwen(name.rstrip("/").rsplit("/", 1)[-1], generation, _TAG_BACKBONE[tag], templates)
    return replace(found, registered=False)


def _unregistered(path: str | Path, backbone: str) -> Checkpoint:
    templates = _LLAVA_V1 if backbone == "llava-onevision" else _CLASSIC
    kwargs = {"enable_thinking": False} if backbone == "qwen3.5" else {}
    return Checkpoint(Path(str(path)).name or str(path), "1.0", backbone, templates, kwargs, registered=False)


def list_checkpoints() -> list[str]:
    """Hub ids of every registered checkpoint."""
    return sorted(c.hub_id for c in CHECKPOINTS.values())
