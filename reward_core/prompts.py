"""Prompt registry: every upstream UnifiedReward prompt as a typed, byte-exact `Template`.

The texts live in ``reward_core/data/upstream-prompts.json`` (a byte-exact copy of upstream's
strings); the metadata that says how to run and parse each one lives in ``_METADATA`` below,
the single place where a template's task, mode, parser, scale and token budget are decided.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from importlib import resources
from typing import Any, NamedTuple

__all__ = ["Template", "get_template", "register_template", "list_templates", "MEDIA_COUNTS"]

MEDIA_COUNTS = {"image": 1, "images2": 2, "video": 1, "videos2": 2, "images3": 3}
PAIRWISE_MODES = frozenset({"pair_rank", "cot_pair_rank", "flex_pair_rank", "pair_score"})
TASKS = frozenset(
    {"image_generation", "video_generation", "image_understanding", "video_understanding", "image_edit", "system"}
)
MODES = PAIRWISE_MODES | {"point_score", "multi_score", "edit_point_score", "system"}


@dataclass(frozen=True)
class Template:
    """One judge prompt and everything needed to run it and read its answer."""

    key: str
    text: str  # str.format text; literal braces are doubled
    task: str
    mode: str
    media: str
    parser: str  # name understood by reward_core.parsers.parse
    fields: tuple[str, ...]
    scale: tuple[float, float] | None
    max_new_tokens: int
    answer_prefix: str | None  # logit mode: assistant text prefilled before the decision token
    label: str | None  # pairwise subject word ("Image", "Video", "Answer", "Response", "Edited image")

    def __post_init__(self) -> None:
        if self.media not in MEDIA_COUNTS:
            raise ValueError(f"template {self.key!r}: unknown media {self.media!r}; expected one of {sorted(MEDIA_COUNTS)}")
        if self.mode not in MODES:
            raise ValueError(f"template {self.key!r}: unknown mode {self.mode!r}; expected one of {sorted(MODES)}")
        placeholders = placeholders_of(self.text)
        if set(self.fields) != set(placeholders):
            raise ValueError(f"template {self.key!r}: fields {self.fields} do not match the placeholders {placeholders}")

    @property
    def media_count(self) -> int:
        return MEDIA_COUNTS[self.media]

    @property
    def pairwise(self) -> bool:
        return self.mode in PAIRWISE_MODES

    def max_scaled(self, score: float) -> float:
        """``score`` divided by the top of the template's scale (Flow-GRPO's reward scale: a 1-5 score / 5)."""
        if self.scale is None:
            raise ValueError(f"template {self.key!r} has no score scale")
        return score / self.scale[1]

    def render(self, **values: Any) -> str:
        """Fill the placeholders with ``str.format``; extra values are ignored."""
        missing = [name for name in self.fields if name not in values]
        if missing:
            raise ValueError(f"template {self.key!r} needs value(s) for {', '.join(missing)}")
        return self.text.format(**{name: values[name] for name in self.fields})


def placeholders_of(text: str) -> tuple[str, ...]:
    """Placeholder names of a ``str.format`` text, in order of first appearance."""
    names: list[str] = []
    for _, name, _, _ in string.Formatter().parse(text):
        if name is not None and name not in names:
            if not name.isidentifier():
                raise ValueError(f"unsupported placeholder {{{name}}}: use plain names")
            names.append(name)
    return tuple(names)


class _Meta(NamedTuple):
    task: str
    mode: str
    parser: str
    scale: tuple[float, float] | None
    max_new_tokens: int
    answer_prefix: str | None
    label: str | None


# max_new_tokens: upstream's value per script (upstream-unifiedreward.md §(b)/(c)).
_QWEN_IMAGE_GEN = 512  # inference_qwen image-generation pair / point scripts
_QWEN_VIDEO = 1024  # every inference_qwen video script (and Think-qwen video)
_LONG = 4096  # LLaVA path, ACS, image understanding, and the vLLM client (max_tokens=4096)
# Think-qwen image generation keeps upstream's 512 although a full CoT can exceed it and lose
# its <answer> (truncation shows up as a parse_error); pass max_new_tokens>=1024 to be safe.
_THINK_QWEN_IMAGE_GEN = 512

_S5, _S10, _S100, _S25 = (1.0, 5.0), (1.0, 10.0), (0.0, 100.0), (0.0, 25.0)
_FINAL = "Final Score:"
_JUDGMENT = "Overall Judgment: Answer"


def _m(task, mode, parser, max_new_tokens, *, scale=None, prefix=None, label=None) -> _Meta:
    return _Meta(task, mode, parser, scale, max_new_tokens, prefix, label)


_IG, _VG, _IU, _VU, _ED = (
    "image_generation",
    "video_generation",
    "image_understanding",
    "video_understanding",
    "image_edit",
)

_METADATA: dict[str, _Meta] = {
    # --- image generation ---
    "image_generation.pair_rank.v1": _m(_IG, "pair_rank", "pair_rank_image", _QWEN_IMAGE_GEN, prefix="Image", label="Image"),
    "image_generation.pair_rank.v1.llava": _m(_IG, "pair_rank", "pair_rank_image", _LONG, prefix="Image", label="Image"),
    "image_generation.pair_score.v2": _m(_IG, "pair_score", "pair_score_image", _LONG, label="Image"),
    # The reference records no max_tokens for the SGLang client: use the server paths' 4096.
    "image_generation.point_score.sglang_v1.5": _m(_IG, "point_score", "final_score_1_5", _LONG, scale=_S5, prefix=_FINAL),
    "image_generation.point_score.v1": _m(_IG, "point_score", "final_score_1_5", _QWEN_IMAGE_GEN, scale=_S5, prefix=_FINAL),
    "image_generation.point_score.v1.llava": _m(_IG, "point_score", "final_score_1_5", _LONG, scale=_S5, prefix=_FINAL),
    "image_generation.point_score_acs.v1.5": _m(_IG, "multi_score", "acs", _LONG, scale=_S5),
    "image_generation.point_score_acs.v1.5.llava": _m(_IG, "multi_score", "acs", _LONG, scale=_S5),
    "image_generation.point_score_acs.v2": _m(_IG, "multi_score", "acs", _LONG, scale=_S5),
    # --- video generation ---
    "video_generation.pair_rank.v1": _m(_VG, "pair_rank", "pair_rank_video", _QWEN_VIDEO, prefix="Video", label="Video"),
    "video_generation.pair_rank.v1.llava": _m(_VG, "pair_rank", "pair_rank_video", _LONG, prefix="Video", label="Video"),
    "video_generation.pair_score.v2": _m(_VG, "pair_score", "pair_score_video", _LONG, label="Video"),
    "video_generation.point_score.v1": _m(_VG, "point_score", "final_score_1_10", _QWEN_VIDEO, scale=_S10, prefix=_FINAL),
    "video_generation.point_score.v1.llava": _m(_VG, "point_score", "final_score_1_10", _LONG, scale=_S10, prefix=_FINAL),
    "video_generation.point_score_aps.v2": _m(_VG, "multi_score", "aps", _LONG, scale=_S5),
    # --- image understanding ---
    "image_understanding.pair_rank.v1": _m(_IU, "pair_rank", "pair_rank_answer", _LONG, prefix="Answer", label="Answer"),
    # LLaVA-Critic wording ("The first response:"); no fixed conclusion string, so no logit mode.
    "image_understanding.pair_rank.v1.llava": _m(_IU, "pair_rank", "pair_rank_answer", _LONG, label="Response"),
    "image_understanding.point_score.v1": _m(_IU, "point_score", "final_score_0_100", _LONG, scale=_S100, prefix=_FINAL),
    "image_understanding.point_score.v1.llava": _m(_IU, "point_score", "final_score_0_100", _LONG, scale=_S100, prefix=_FINAL),
    # --- video understanding ---
    "video_understanding.pair_rank.v1": _m(_VU, "pair_rank", "pair_rank_answer", _QWEN_VIDEO, prefix=_JUDGMENT, label="Answer"),
    "video_understanding.pair_rank.v1.llava": _m(_VU, "pair_rank", "pair_rank_answer", _LONG, label="Response"),
    "video_understanding.point_score.v1": _m(_VU, "point_score", "final_score_1_5", _QWEN_VIDEO, scale=_S5, prefix=_FINAL),
    "video_understanding.point_score.v1.llava": _m(_VU, "point_score", "final_score_1_5", _LONG, scale=_S5, prefix=_FINAL),
    # --- Think (CoT) ---
    # The reference records no budget for the gradio demo: use the long one.
    "think.gradio.image_generation.pair_rank": _m(_IG, "cot_pair_rank", "think_image", _LONG, label="Image"),
    "think.grpo.system_prompt": _m("system", "system", "think", _LONG),  # GRPO max_completion_length
    "think.image_generation.pair_rank": _m(_IG, "cot_pair_rank", "think_image", _THINK_QWEN_IMAGE_GEN, label="Image"),
    "think.image_generation.pair_rank.llava": _m(_IG, "cot_pair_rank", "think_image", _LONG, label="Image"),
    "think.image_understanding.pair_rank": _m(_IU, "cot_pair_rank", "think_answer", _LONG, label="Answer"),
    "think.image_understanding.pair_rank.llava": _m(_IU, "cot_pair_rank", "think_answer", _LONG, label="Answer"),
    "think.qwen3.image_generation.pair_rank": _m(_IG, "cot_pair_rank", "think_image", _LONG, label="Image"),
    "think.qwen3.image_understanding.pair_rank": _m(_IU, "cot_pair_rank", "think_answer", _LONG, label="Answer"),
    "think.qwen3.video_generation.pair_rank": _m(_VG, "cot_pair_rank", "think_video", _LONG, label="Video"),
    "think.qwen3.video_understanding.pair_rank": _m(_VU, "cot_pair_rank", "think_answer", _LONG, label="Answer"),
    "think.video_generation.pair_rank": _m(_VG, "cot_pair_rank", "think_video", _QWEN_VIDEO, label="Video"),
    "think.video_generation.pair_rank.llava": _m(_VG, "cot_pair_rank", "think_video", _LONG, label="Video"),
    "think.video_understanding.pair_rank": _m(_VU, "cot_pair_rank", "think_answer", _QWEN_VIDEO, label="Answer"),
    "think.video_understanding.pair_rank.llava": _m(_VU, "cot_pair_rank", "think_answer", _LONG, label="Answer"),
    # --- edit (media images3 = source, edited 1, edited 2) ---
    "edit.pair_rank": _m(_ED, "pair_rank", "pair_rank_edited_image", _LONG, prefix="Edited image", label="Edited image"),
    "edit.pair_score": _m(_ED, "pair_score", "edit_pair_score", _LONG, label="Edited image"),
    "edit.point_score_instruction_following": _m(
        _ED, "edit_point_score", "edit_point_instruction_following", _LONG, scale=_S25
    ),
    "edit.point_score_quality": _m(_ED, "edit_point_score", "edit_point_quality", _LONG, scale=_S25),
    # --- Flex (JSON) ---
    "flex.image_generation.pair_rank": _m(_IG, "flex_pair_rank", "flex_image", _LONG, label="Image"),
    "flex.video_generation.pair_rank": _m(_VG, "flex_pair_rank", "flex_video", _LONG, label="Video"),
    # --- preference-data construction (LLaVA infer+sift) ---
    "preference.image_understanding.pair_rank": _m(_IU, "pair_rank", "pair_rank_answer", _LONG, prefix=_JUDGMENT, label="Answer"),
    "preference.image_understanding.point_score": _m(_IU, "point_score", "final_score_0_100", _LONG, scale=_S100, prefix=_FINAL),
    "preference.video_understanding.pair_rank": _m(_VU, "pair_rank", "pair_rank_answer", _LONG, prefix=_JUDGMENT, label="Answer"),
    "preference.video_understanding.point_score": _m(_VU, "point_score", "final_score_1_5", _LONG, scale=_S5, prefix=_FINAL),
    # --- Diffusion/VideoDPO sift (LLaVA) ---
    "dpo.image_generation.pair_rank": _m(_IG, "pair_rank", "pair_rank_image", _LONG, prefix="Image", label="Image"),
    "dpo.image_generation.point_score": _m(_IG, "point_score", "final_score_1_10", _LONG, scale=_S10, prefix=_FINAL),
    "dpo.video_generation.pair_rank": _m(_VG, "pair_rank", "pair_rank_video", _LONG, prefix="Video", label="Video"),
    "dpo.video_generation.point_score": _m(_VG, "point_score", "final_score_1_10", _LONG, scale=_S10, prefix=_FINAL),
    # --- benchmark-only variants (LLaVA) ---
    "bench.image_understanding.pair_rank.llava": _m(_IU, "pair_rank", "pair_rank_answer", _LONG, prefix="Answer", label="Answer"),
    "bench.think.image_generation.pair_rank_answer.llava": _m(
        _IG, "pair_rank", "pair_rank_image", _LONG, prefix="Image", label="Image"
    ),
    "bench.video_generation.pair_rank.llava": _m(_VG, "pair_rank", "pair_rank_video", _LONG, prefix="Video", label="Video"),
    "bench.video_understanding.pair_rank.llava": _m(_VU, "pair_rank", "pair_rank_answer", _LONG, prefix=_JUDGMENT, label="Answer"),
}


def load_upstream_prompts() -> dict[str, dict[str, Any]]:
    """The raw upstream JSON (key -> {"template", "media", "output", "source", "notes"?})."""
    raw = resources.files("reward_core").joinpath("data/upstream-prompts.json").read_text(encoding="utf-8")
    return json.loads(raw)


def _build_registry() -> dict[str, Template]:
    upstream = load_upstream_prompts()
    if set(upstream) != set(_METADATA):
        raise RuntimeError(
            "upstream-prompts.json and the metadata table disagree: "
            f"no metadata for {sorted(set(upstream) - set(_METADATA))}, "
            f"no text for {sorted(set(_METADATA) - set(upstream))}"
        )
    registry = {}
    for key, entry in upstream.items():
        meta = _METADATA[key]
        text = entry["template"]
        registry[key] = Template(key=key, text=text, media=entry["media"], fields=placeholders_of(text), **meta._asdict())
    return registry


_REGISTRY: dict[str, Template] = _build_registry()


def get_template(key: str | Template) -> Template:
    """The registered template ``key`` (a `Template` is passed through)."""
    if isinstance(key, Template):
        return key
    try:
        return _REGISTRY[key]
    except KeyError:
        raise KeyError(f"unknown template {key!r}; see list_templates() or `unifiedreward prompt --list`") from None


def register_template(template: Template, overwrite: bool = False) -> Template:
    """Add a user template; refuses to replace an existing key unless ``overwrite=True``."""
    from reward_core.parsers import PARSERS  # parsers does not import prompts at module level

    if template.parser not in PARSERS:
        raise ValueError(f"template {template.key!r}: unknown parser {template.parser!r}")
    if template.key in _REGISTRY and not overwrite:
        raise ValueError(f"template {template.key!r} already exists; pass overwrite=True to replace it")
    _REGISTRY[template.key] = template
    return template


def list_templates(prefix: str = "") -> list[str]:
    """Sorted keys of all registered templates (optionally only those starting with ``prefix``)."""
    return sorted(key for key in _REGISTRY if key.startswith(prefix))
