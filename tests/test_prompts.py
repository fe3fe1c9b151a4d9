"""The prompt registry reproduces upstream's prompts byte for byte and describes them consistently."""

from __future__ import annotations

import dataclasses
import json
import string
from pathlib import Path

import pytest

from reward_core import prompts
from reward_core.parsers import PARSERS
from reward_core.prompts import (
    MEDIA_COUNTS,
    Template,
    get_template,
    list_templates,
    load_upstream_prompts,
    register_template,
)

# The reference copy lives in shared/ beside the checkout (here and in CI).
REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "upstream-prompts.json"
UPSTREAM = load_upstream_prompts()
PLACEHOLDER_VALUES = {
    "prompt": "a red {cube} on a blue sphere",  # braces in values must survive untouched
    "question": "What is on the table?",
    "answer1": "A cup.",
    "answer2": "Two cups and a plate.",
    "response": "A cup of coffee.",
    "instruction": "make the sky purple",
    "image_tokens": "<image>\n" * 8,
}


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def test_registry_covers_every_upstream_prompt():
    assert len(UPSTREAM) == 55
    assert set(UPSTREAM) <= set(list_templates())


@pytest.mark.skipif(not REFERENCE.exists(), reason="shared reference copy not available")
def test_package_data_is_byte_exact_copy_of_reference():
    package_copy = Path(__file__).resolve().parents[1] / "reward_core" / "data" / "upstream-prompts.json"
    assert package_copy.read_bytes() == REFERENCE.read_bytes()


@pytest.mark.parametrize("key", sorted(UPSTREAM))
def test_render_is_byte_exact(key):
    template = get_template(key)
    upstream_text = UPSTREAM[key]["template"]
    assert template.text == upstream_text
    values = {name: PLACEHOLDER_VALUES[name] for name in _placeholders(upstream_text)}
    assert template.render(**values, unused_extra="ignored") == upstream_text.format(**values)


@pytest.mark.parametrize("key", sorted(UPSTREAM))
def test_metadata_is_complete_and_consistent(key):
    template = get_template(key)
    entry = UPSTREAM[key]
    assert template.key == key
    assert template.media == entry["media"]
    assert template.media_count == MEDIA_COUNTS[entry["media"]]
    assert set(template.fields) == _placeholders(entry["template"])
    assert len(template.fields) == len(set(template.fields))
    assert template.parser in PARSERS
    assert template.max_new_tokens in (512, 1024, 4096)
    if template.mode in ("point_score", "multi_score", "edit_point_score"):
        low, high = template.scale
        assert low < high
    else:
        assert template.scale is None
    if template.pairwise:
        assert template.label in ("Image", "Video", "Answer", "Response", "Edited image")
    if template.mode in ("cot_pair_rank", "flex_pair_rank", "pair_score", "multi_score", "edit_point_score", "system"):
        assert template.answer_prefix is None, "logit mode only where the decision can be the next token"
    if template.answer_prefix is not None:
        assert template.mode in ("pair_rank", "point_score")
        assert template.answer_prefix.startswith(template.label or "Final Score") or "Judgment" in template.answer_prefix
    # understanding pairs compare two answers about one media item
    if template.task.endswith("understanding") and template.pairwise:
        assert {"answer1", "answer2"} <= set(template.fields)
        assert template.media_count == 1


@pytest.mark.parametrize(
    "key, task, mode, parser, scale, max_new_tokens, prefix",
    [
        ("image_generation.pair_rank.v1", "image_generation", "pair_rank", "pair_rank_image", None, 512, "Image"),
        ("image_generation.point_score.v1", "image_generation", "point_score", "final_score_1_5", (1, 5), 512, "Final Score:"),
        ("image_generation.point_score_acs.v1.5", "image_generation", "multi_score", "acs", (1, 5), 4096, None),
        ("video_generation.point_score.v1", "video_generation", "point_score", "final_score_1_10", (1, 10), 1024, "Final Score:"),
        ("dpo.image_generation.point_score", "image_generation", "point_score", "final_score_1_10", (1, 10), 4096, "Final Score:"),
        ("image_understanding.point_score.v1", "image_understanding", "point_score", "final_score_0_100", (0, 100), 4096, "Final Score:"),
        ("video_understanding.pair_rank.v1", "video_understanding", "pair_rank", "pair_rank_answer", None, 1024, "Overall Judgment: Answer"),
        ("think.image_generation.pair_rank", "image_generation", "cot_pair_rank", "think_image", None, 512, None),
        ("think.image_understanding.pair_rank", "image_understanding", "cot_pair_rank", "think_answer", None, 4096, None),
        ("think.video_generation.pair_rank", "video_generation", "cot_pair_rank", "think_video", None, 1024, None),
        ("edit.pair_rank", "image_edit", "pair_rank", "pair_rank_edited_image", None, 4096, "Edited image"),
        ("edit.point_score_quality", "image_edit", "edit_point_score", "edit_point_quality", (0, 25), 4096, None),
        ("flex.video_generation.pair_rank", "video_generation", "flex_pair_rank", "flex_video", None, 4096, None),
        ("video_generation.pair_score.v2", "video_generation", "pair_score", "pair_score_video", None, 4096, None),
        ("think.grpo.system_prompt", "system", "system", "think", None, 4096, None),
    ],
)
def test_upstream_settings(key, task, mode, parser, scale, max_new_tokens, prefix):
    template = get_template(key)
    assert (template.task, template.mode, template.parser) == (task, mode, parser)
    assert template.scale == scale
    assert template.max_new_tokens == max_new_tokens
    assert template.answer_prefix == prefix


def test_pairwise_property():
    assert get_template("image_generation.pair_rank.v1").pairwise
    assert get_template("image_understanding.pair_rank.v1").pairwise
    assert get_template("flex.image_generation.pair_rank").pairwise
    assert not get_template("image_generation.point_score.v1").pairwise
    assert get_template("edit.pair_score").media_count == 3


def test_missing_field_raises_value_error_naming_it():
    template = get_template("image_understanding.pair_rank.v1")
    with pytest.raises(ValueError, match="answer2"):
        template.render(question="q", answer1="a")


def test_template_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_template("image_generation.pair_rank.v1").text = "x"


def test_unknown_key():
    with pytest.raises(KeyError, match="unknown template"):
        get_template("no.such.template")


@pytest.fixture
def scratch_registry(monkeypatch):
    """Registrations made by a test vanish after it."""
    monkeypatch.setattr(prompts, "_REGISTRY", dict(prompts._REGISTRY))


def test_register_template_refuses_overwrite(scratch_registry):
    base = get_template("image_generation.point_score.v1")
    custom = dataclasses.replace(base, key="tests.custom.point", text="Rate {prompt}. Say 'Final Score:'.")
    assert register_template(custom) is custom
    assert get_template("tests.custom.point").render(prompt="a cat") == "Rate a cat. Say 'Final Score:'."
    assert "tests.custom.point" in list_templates("tests.")
    with pytest.raises(ValueError, match="already exists"):
        register_template(custom)
    replacement = dataclasses.replace(custom, max_new_tokens=64)
    register_template(replacement, overwrite=True)
    assert get_template("tests.custom.point").max_new_tokens == 64
    with pytest.raises(ValueError, match="already exists"):
        register_template(get_template("image_generation.pair_rank.v1"))


def test_template_validation(scratch_registry):
    base = get_template("image_generation.point_score.v1")
    with pytest.raises(ValueError, match="placeholders"):
        dataclasses.replace(base, key="tests.bad", text="no placeholder here")
    with pytest.raises(ValueError, match="media"):
        dataclasses.replace(base, key="tests.bad", media="audio")
    with pytest.raises(ValueError, match="unknown parser"):
        register_template(dataclasses.replace(base, key="tests.bad_parser", parser="nope"))


def test_list_templates_sorted_and_json_serialisable():
    keys = list_templates()
    assert keys == sorted(keys)
    json.dumps([dataclasses.asdict(get_template(k)) for k in keys])
