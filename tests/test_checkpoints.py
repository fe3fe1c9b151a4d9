"""Checkpoint registry: every released id resolves to its family and templates; templates picked without a
key; the other prompt format refused; LLaVA-format folders fail before loading; Qwen3.5 thinking off."""

from __future__ import annotations

import json
import math

import pytest
from PIL import Image

from reward_core import UnifiedReward
from reward_core.backends.base import AnswerLogprobs, Generation
from reward_core.checkpoints import CHECKPOINTS, LLAVA, QWEN, LlavaCheckpointError, list_checkpoints, lookup, resolve, template_format
from reward_core.prompts import get_template, list_templates
from servers import StubServer, chat_response

# ids as in upstream-unifiedreward.md §(g) (+ UnifiedReward-0.5b, named in issue 14)
RELEASED = (
    ["UnifiedReward-0.5b", "UnifiedReward-7b", "UnifiedReward-7b-v1.5", "UnifiedReward-Think-7b"]
    + [f"UnifiedReward-qwen-{s}" for s in ("3b", "7b", "32b")]
    + [f"UnifiedReward-2.0-qwen-{s}" for s in ("3b", "7b", "32b", "72b")]
    + [f"UnifiedReward-2.0-qwen3vl-{s}" for s in ("2b", "4b", "8b", "32b")]
    + [f"UnifiedReward-2.0-qwen35-{s}" for s in ("4b", "9b", "27b")]
    + ["UnifiedReward-Think-qwen-7b"] + [f"UnifiedReward-Think-qwen3vl-{s}" for s in ("2b", "4b", "8b", "32b")]
    + ["UnifiedReward-Think-qwen35-9b"]
    + [f"UnifiedReward-Edit-qwen-{s}" for s in ("3b", "7b", "32b", "72b")]
    + [f"UnifiedReward-Edit-qwen3vl-{s}" for s in ("2b", "4b", "8b", "32b")] + ["UnifiedReward-Edit-qwen35-9b"]
    + ["UnifiedReward-Flex-qwen3vl-8b", "UnifiedReward-Flex-qwen35-9b"]
)


def test_the_registry_is_exactly_the_released_list():
    assert list_checkpoints() == sorted(f"CodeGoat24/{name}" for name in RELEASED)


@pytest.mark.parametrize("name", RELEASED)
def test_every_released_id_resolves(name):
    entry = resolve(f"CodeGoat24/{name}")
    assert entry is resolve(name) is lookup(f"/models/hub/models--CodeGoat24--{name}/snapshots/0123abc")
    assert entry.name == name and entry.registered
    generation = "think" if "Think" in name else "edit" if "Edit" in name else "flex" if "Flex" in name else (
        "2.0" if "2.0" in name else "1.0")  # fmt: skip
    assert entry.generation == generation
    llava = "qwen" not in name
    assert entry.prompt_format == (LLAVA if llava else QWEN) and entry.in_process is not llava
    assert entry.chat_template_kwargs == ({"enable_thinking": False} if "qwen35" in name else {})
    assert (entry.min_new_tokens or 0) >= (1024 if generation == "think" else 0)
    for (task, mode), key in entry.templates.items():
        template = get_template(key)
        assert (template.task, template.mode) == (task, mode), key
        assert template_format(template) == entry.prompt_format, key
    if generation == "flex":
        assert entry.pair_mode == "flex_pair_rank" and ("image_generation", "point_score") not in entry.templates
    elif generation == "think":
        assert entry.pair_mode == "cot_pair_rank"
        assert entry.default_template("video_generation", "cot_pair_rank").key.startswith(
            "think.qwen3." if ("qwen3vl" in name or "qwen35" in name) else "think.")
    else:
        assert entry.default_template("image_generation", "pair_rank").key.startswith("image_generation.pair_rank.v1")


def test_new_sizes_resolve_by_their_name():
    entry = resolve("CodeGoat24/UnifiedReward-Think-qwen35-27b")
    assert not entry.registered and (entry.generation, entry.backbone) == ("think", "qwen3.5")
    assert entry.chat_template_kwargs == {"enable_thinking": False}
    assert entry.default_template("image_generation", "cot_pair_rank").key == "think.qwen3.image_generation.pair_rank"
    assert resolve("UnifiedReward-2.0-qwen3vl-1b").generation == "2.0"


def test_template_formats():
    llava = {k for k in list_templates() if template_format(get_template(k)) == LLAVA}
    assert all(k.endswith(".llava") or k.startswith(("dpo.", "preference.", "bench.")) or "sglang" in k for k in llava)
    assert "dpo.image_generation.pair_rank" in llava and "image_generation.pair_rank.v1" not in llava


class Recorder:
    """Records the requests (rendered text and media) a judge sends; answers like a cooperative judge."""

    def __init__(self):
        self.requests = []

    def generate(self, requests, max_new_tokens):
        self.requests += [(r, max_new_tokens) for r in requests]
        return [Generation(text="Image 1 is better.") for _ in requests]

    def answer_logprobs(self, requests, candidates):
        return [AnswerLogprobs({"1": math.log(0.7), "2": math.log(0.3)}) for _ in requests]


@pytest.mark.parametrize(
    "name,call,expected",
    [
        ("UnifiedReward-2.0-qwen3vl-8b", "compare_images", "image_generation.pair_rank.v1"),
        ("UnifiedReward-Think-qwen3vl-8b", "compare_images", "think.qwen3.image_generation.pair_rank"),
        ("UnifiedReward-Think-qwen-7b", "compare_images", "think.image_generation.pair_rank"),
        ("UnifiedReward-Flex-qwen35-9b", "compare_images", "flex.image_generation.pair_rank"),
        ("UnifiedReward-Edit-qwen-7b", "compare_edits", "edit.pair_rank"),
        ("UnifiedReward-qwen-7b", "compare_answers", "image_understanding.pair_rank.v1"),
        ("UnifiedReward-qwen-7b", "score_image", "image_generation.point_score.v1"),
        ("UnifiedReward-2.0-qwen-7b", "score_video", "video_generation.point_score.v1"),
    ],
)
def test_calls_without_a_key_use_the_checkpoints_template(tmp_path, name, call, expected):
    image = Image.new("RGB", (28, 28), (9, 9, 9))
    video = tmp_path / "clip.mp4"
    from unifiedreward.toy.data import write_video

    write_video([image] * 4, video)
    backend = Recorder()
    rm = UnifiedReward(backend, checkpoint=lookup(name))
    calls = {
        "compare_images": lambda: rm.compare(image, image, prompt="a cat") if "Think" in name else rm.compare(
            media1=image, media2=image, prompt="a cat"),
        "compare_edits": lambda: rm.compare([image, image], image, instruction="make it red"),
        "compare_answers": lambda: rm.compare(image, question="q?", answer1="a", answer2="b"),
        "score_image": lambda: rm.score(image, prompt="a cat"),
        "score_video": lambda: rm.score(media=str(video), prompt="a cat"),
    }
    calls[call]()
    (request, budget), = backend.requests
    fields = {"prompt": "a cat", "instruction": "make it red", "question": "q?", "answer1": "a", "answer2": "b"}
    template = get_template(expected)
    assert request.text == template.render(**fields)
    assert budget == max(template.max_new_tokens, lookup(name).min_new_tokens or 0)


def test_the_other_prompt_format_is_refused_unless_forced():
    image = Image.new("RGB", (28, 28))
    rm = UnifiedReward(Recorder(), checkpoint=lookup("UnifiedReward-qwen-7b"))
    with pytest.raises(ValueError, match="LLaVA .*force=True"):
        rm.compare("dpo.image_generation.pair_rank", image, image, prompt="x")
    assert rm.compare("dpo.image_generation.pair_rank", image, image, prompt="x", force=True).winner == 1
    llava = UnifiedReward(Recorder(), checkpoint=lookup("UnifiedReward-7b-v1.5"))
    with pytest.raises(ValueError, match="Qwen"):
        llava.compare("image_generation.pair_rank.v1", image, image, prompt="x")
    assert llava.default_template("image_generation", "point_score").key == "image_generation.point_score.sglang_v1.5"
    with pytest.raises(ValueError, match="no default point_score template"):
        UnifiedReward(Recorder(), checkpoint=lookup("UnifiedReward-Flex-qwen3vl-8b")).score(image, prompt="x")
    with pytest.raises(ValueError, match="checkpoint is unknown"):
        UnifiedReward(Recorder()).score(image, prompt="x")


def test_llava_format_folders_fail_before_loading(tmp_path):
    folder = tmp_path / "UnifiedReward-7b"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": ["LlavaQwenForCausalLM"], "model_type": "llava"}))
    with pytest.raises(LlavaCheckpointError, match="SGLang.*from_server") as error:
        UnifiedReward.from_pretrained(str(folder))  # no weights in the folder: raising here proves it is early
    assert "serve-cmd CodeGoat24/UnifiedReward-7b --engine sglang" in str(error.value)
    renamed = tmp_path / "my-judge"
    renamed.mkdir()
    (renamed / "config.json").write_text(json.dumps({"architectures": ["LlavaQwenForCausalLM"], "model_type": "llava"}))
    with pytest.raises(LlavaCheckpointError):
        UnifiedReward.from_pretrained(str(renamed))
    with pytest.raises(LlavaCheckpointError):
        UnifiedReward.from_pretrained("CodeGoat24/UnifiedReward-Think-7b")  # by id: no download attempted


def test_unregistered_local_qwen_judges_get_the_classic_prompts(toy_world):
    entry = resolve(toy_world["reward_model"])
    assert not entry.registered and entry.backbone == "qwen2.5-vl" and entry.prompt_format == QWEN
    assert entry.default_template("image_generation", "point_score").key == "image_generation.point_score.v1"
    assert resolve(toy_world["reward_model"], checkpoint="CodeGoat24/UnifiedReward-2.0-qwen35-9b").backbone == "qwen3.5"
    with pytest.raises(ValueError, match="unknown UnifiedReward checkpoint"):
        resolve(toy_world["reward_model"], checkpoint="UnifiedReward-99b")


def test_toy_judge_end_to_end_without_template_keys(toy_world):
    rm = UnifiedReward.from_pretrained(toy_world["reward_model"], device="cpu", max_new_tokens=4)
    red, blue = Image.new("RGB", (56, 56), (255, 0, 0)), Image.new("RGB", (56, 56), (0, 0, 255))
    score = rm.score(red, prompt="a red square", mode="logit")
    pair = rm.compare(red, blue, prompt="a red square", mode="logit")
    assert score.ok and 1.0 <= score.score <= 5.0 and pair.ok and pair.winner in (1, 2)
    with pytest.raises(ValueError, match="force=True"):
        rm.score("image_generation.point_score.v1.llava", red, prompt="x")


QWEN3_THINKING_SUFFIX = "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}"


def test_qwen35_judges_are_prompted_with_thinking_off(toy_world):
    rm = UnifiedReward.from_pretrained(
        toy_world["reward_model"], device="cpu", checkpoint="CodeGoat24/UnifiedReward-2.0-qwen35-9b"
    )
    processor = rm.backend.processor
    processor.chat_template = processor.chat_template + QWEN3_THINKING_SUFFIX  # Qwen3's switch, on the toy template
    from reward_core.backends.base import BackendRequest

    text, _ = rm.backend.prompt_text(BackendRequest(media=[Image.new("RGB", (28, 28))], text="Rate it."))
    assert text.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    plain = UnifiedReward.from_pretrained(toy_world["reward_model"], device="cpu")
    plain.backend.processor.chat_template = processor.chat_template
    text, _ = plain.backend.prompt_text(BackendRequest(media=[Image.new("RGB", (28, 28))], text="Rate it."))
    assert text.endswith("<|im_start|>assistant\n")


def test_from_server_sends_the_checkpoints_chat_template_options():
    """STUB server: records what the client sends."""
    with StubServer(lambda path, body: (200, chat_response("Image 1 is better."))) as stub:
        rm = UnifiedReward.from_server(stub.base_url, checkpoint="CodeGoat24/UnifiedReward-Think-qwen35-9b")
        image = Image.new("RGB", (28, 28))
        rm.compare(image, image, prompt="x")
    [body] = stub.received
    assert body["chat_template_kwargs"] == {"enable_thinking": False}
    assert "<answer>" in body["messages"][0]["content"][-1]["text"]  # the Think CoT prompt, picked by checkpoint
    assert len(CHECKPOINTS) == len(RELEASED)
