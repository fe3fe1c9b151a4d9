"""Fast tests of the diffusers integration pieces: DPO loss, pair data, candidates, sifting, Flow-GRPO reward."""

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from integrations.diffusers.dpo_data import (
    PairTransform,
    PreferencePairs,
    PreferenceSplit,
    collate_pairs,
    open_image,
    strict_preference_indices,
)
from integrations.diffusers.dpo_loss import diffusion_dpo_loss
from integrations.diffusers.flow_grpo_reward import (
    UnifiedRewardScorer,
    UnifiedRewardWinRateScorer,
    split_images,
    unifiedreward_score,
)
from integrations.diffusers.generate_candidates import generate_candidates, read_prompts
from integrations.diffusers.sift_images import sift_candidates
from reward_core import UnifiedReward
from reward_core.backends.base import AnswerLogprobs, Generation


def brightness(image) -> float:
    return float(np.asarray(image.convert("L"), dtype=np.float32).mean()) / 255.0


class BrightnessJudge:
    """A toy judge backend answering in UnifiedReward's format: brighter is better; score = brightness on 1-5.

    ``fail_when(request)`` makes it answer garbage for chosen requests (an unparseable verdict).
    """

    def __init__(self, fail_when=lambda request: False, tie=False):
        self.fail_when, self.tie = fail_when, tie

    def _answer(self, request) -> str:
        if self.fail_when(request):
            return "I cannot tell."
        if len(request.media) == 2:
            first, second = (brightness(m) for m in request.media)
            if self.tie or first == second:
                return "Both images are equally good."
            return "Image 1 is better." if first > second else "Image 2 is better."
        return f"Final Score: {1 + 4 * brightness(request.media[0]):.4f}"

    def generate(self, requests, max_new_tokens):
        return [Generation(text=self._answer(r)) for r in requests]

    def answer_logprobs(self, requests, candidates):
        return [AnswerLogprobs(error="no logit mode in the toy judge") for _ in requests]


def png_bytes(value: int, size: int = 8) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (value, value, value)).save(buffer, format="PNG")
    return buffer.getvalue()


# --------------------------------------------------------------------------- the DPO objective


def test_dpo_loss_matches_the_paper_form_and_counts_ties_half():
    model = torch.tensor([0.50, 0.70, 0.60, 0.60])  # chosen: 0.50, 0.70 ; rejected: 0.60, 0.60
    ref = torch.tensor([0.55, 0.65, 0.60, 0.60])
    out = diffusion_dpo_loss(model, ref, beta_dpo=5000)
    inside = -0.5 * 5000 * ((model[:2] - model[2:]) - (ref[:2] - ref[2:]))
    assert torch.allclose(out.margins, inside)
    assert torch.isclose(out.loss, -torch.nn.functional.logsigmoid(inside).mean())
    assert out.implicit_accuracy.item() == 0.5  # one pair right, one wrong
    untrained = diffusion_dpo_loss(ref, ref, beta_dpo=5000)
    assert untrained.implicit_accuracy.item() == 0.5 and math.isclose(untrained.loss.item(), math.log(2), rel_tol=1e-6)
    assert set(out.metrics()) >= {"loss", "implicit_acc", "rewards/chosen", "rewards/rejected", "rewards/margins"}


def test_dpo_loss_gradient_lowers_the_chosen_loss():
    model = torch.tensor([0.5, 0.5], requires_grad=True)
    diffusion_dpo_loss(model, torch.tensor([0.5, 0.5]), beta_dpo=10).loss.backward()
    assert model.grad[0] > 0 > model.grad[1]  # descent lowers the chosen loss, raises the rejected one


# --------------------------------------------------------------------------- Pick-a-Pic rows


def test_ties_are_dropped_and_label_0_orders_the_pair(tmp_path):
    from datasets import Dataset

    rows = {
        "caption": ["a", "b", "c"],
        "jpg_0": [png_bytes(250), png_bytes(250), png_bytes(250)],
        "jpg_1": [png_bytes(10), png_bytes(10), png_bytes(10)],
        "label_0": [1.0, 0.0, 0.5],
    }
    dataset = Dataset.from_dict(rows)
    kept, dropped = strict_preference_indices(dataset)
    assert dropped == 1 and kept == [0, 1]
    pairs = PreferencePairs(PreferenceSplit(dataset, None, "test"), kept, PairTransform(8, random_flip=False))
    batch = collate_pairs([pairs[i] for i in range(len(pairs))])
    chosen_mean = batch["pixel_values"][:, :3].mean(dim=(1, 2, 3))
    assert chosen_mean[0] > 0.9 and chosen_mean[1] < -0.9  # row "b" prefers jpg_1 (the dark image)
    assert batch["captions"] == ["a", "b"]


def test_open_image_reads_bytes_paths_cells_and_rejects_junk(tmp_path):
    (tmp_path / "x.png").write_bytes(png_bytes(100))
    assert open_image(png_bytes(100)).getpixel((0, 0)) == (100, 100, 100)
    assert open_image("x.png", media_root=tmp_path).size == (8, 8)
    assert open_image({"bytes": png_bytes(7), "path": None}).getpixel((0, 0)) == (7, 7, 7)
    with pytest.raises(TypeError):
        open_image(3.5)


# --------------------------------------------------------------------------- candidates


class FlakyPipeline:
    """Wraps a pipeline and fails on one prompt, to check that a bad prompt fails alone."""

    def __init__(self, pipeline, bad_prompt):
        self.pipeline, self.bad_prompt, self.calls = pipeline, bad_prompt, 0

    @property
    def device(self):
        return self.pipeline.device

    def set_progress_bar_config(self, **kwargs):
        self.pipeline.set_progress_bar_config(**kwargs)

    def __call__(self, prompt, **kwargs):
        self.calls += 1
        if any(self.bad_prompt in text for text in prompt):
            raise RuntimeError("simulated out-of-memory")
        return self.pipeline(prompt=prompt, **kwargs)


@pytest.fixture(scope="module")
def toy_pipeline(toy_world):
    from diffusers import DiffusionPipeline

    return DiffusionPipeline.from_pretrained(toy_world["sd_model"])


def test_generate_candidates_records_seeds_resumes_and_isolates_failures(toy_pipeline, tmp_path):
    prompts = [{"id": "p0", "prompt": "a red circle"}, {"prompt": "a blue square", "split": "test"}]
    flaky = FlakyPipeline(toy_pipeline, bad_prompt="blue")
    summary = generate_candidates(flaky, prompts, tmp_path, num_images_per_prompt=3, seed=7, batch_size=2,
                                  progress=False, num_inference_steps=1)
    assert (summary.generated, summary.failed, summary.images_written) == (1, 1, 3)
    assert "simulated out-of-memory" in summary.errors["prompt-000001"]
    records = [json.loads(line) for line in (tmp_path / "candidates.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == ["p0"] and records[0]["seeds"] == [7, 8, 9]
    first = np.asarray(Image.open(tmp_path / records[0]["images"][0]))
    assert len({Image.open(tmp_path / p).tobytes() for p in records[0]["images"]}) == 3  # one seed per image

    calls_before = flaky.calls
    flaky.bad_prompt = "no prompt has this"
    summary = generate_candidates(flaky, prompts, tmp_path, num_images_per_prompt=3, seed=7, batch_size=2,
                                  progress=False, num_inference_steps=1)
    assert (summary.skipped, summary.generated, summary.failed) == (1, 1, 0)
    assert flaky.calls - calls_before == 2  # only the failed prompt was regenerated (3 images, batch 2)
    records = [json.loads(line) for line in (tmp_path / "candidates.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == ["p0", "prompt-000001"] and records[1]["meta"] == {"split": "test"}
    assert np.array_equal(first, np.asarray(Image.open(tmp_path / records[0]["images"][0])))


def test_read_prompts_requires_a_prompt(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"caption": "ok"}\n\n{"text": "no"}\n')
    with pytest.raises(ValueError, match="3"):
        read_prompts(path)


# --------------------------------------------------------------------------- sifting


def write_candidates(folder, values_per_prompt, splits=None):
    """A generate_candidates-style folder of flat grey images with the given brightness values."""
    lines = []
    for index, values in enumerate(values_per_prompt):
        pid = f"q{index}"
        (folder / "images" / pid).mkdir(parents=True)
        paths = []
        for j, value in enumerate(values):
            Image.new("RGB", (16, 16), (value,) * 3).save(folder / "images" / pid / f"{j}.png")
            paths.append(f"images/{pid}/{j}.png")
        meta = {"split": splits[index]} if splits else {}
        lines.append(json.dumps({"id": pid, "prompt": f"prompt {index}", "images": paths, "seeds": [0] * len(values),
                                 "meta": meta}))
    (folder / "candidates.jsonl").write_text("\n".join(lines) + "\n")


def test_sift_builds_a_pickapic_dataset_and_never_invents_preferences(tmp_path):
    from datasets import load_from_disk

    candidates = tmp_path / "candidates"
    # q0: clear winner; q1: all equal (ties -> dropped); q2: the judge answers garbage (failed); q3: test split
    write_candidates(candidates, [[60, 200, 90, 70], [150, 150, 150, 150], [10, 20, 30, 40], [70, 60, 220, 65]],
                     splits=["train", "train", "train", "test"])
    judge = BrightnessJudge(fail_when=lambda r: all(brightness(m) < 0.2 for m in r.media))
    result = sift_candidates(UnifiedReward(judge), candidates, tmp_path / "dpo", progress=False)
    assert (result["kept"], result["dropped"], result["failed"]) == (2, 1, 1)
    assert result["splits"] == {"train": 1, "test": 1}

    dataset = load_from_disk(str(tmp_path / "dpo"))
    row = dataset["train"][0]
    assert row["caption"] == "prompt 0" and row["label_0"] == 1
    assert brightness(Image.open(io.BytesIO(row["jpg_0"]))) > brightness(Image.open(io.BytesIO(row["jpg_1"])))
    assert row["chosen_score"] > row["rejected_score"]
    assert row["jpg_0"] == (tmp_path / "dpo" / row["jpg_0_path"]).read_bytes()
    assert set(dataset["train"].column_names) >= {"caption", "jpg_0", "jpg_1", "label_0", "chosen_score",
                                                  "rejected_score"}
    records = [json.loads(line) for line in (tmp_path / "dpo" / "sift.jsonl").read_text().splitlines()]
    assert {r["id"]: r["status"] for r in records} == {"q0": "kept", "q1": "dropped", "q2": "failed", "q3": "kept"}
    page = Path(result["report"])  # the HTML report: every prompt, its 4 candidates as thumbnails
    assert page == tmp_path / "dpo" / "report" / "index.html"
    assert page.read_text().count("<img ") == 4 * 4 and page.read_text().count('class="card" data-status=') == 4


def test_sift_with_only_ties_writes_no_dataset(tmp_path):
    write_candidates(tmp_path / "c", [[10, 200]])
    with pytest.raises(RuntimeError, match="No pair was kept"):
        sift_candidates(UnifiedReward(BrightnessJudge(tie=True)), tmp_path / "c", tmp_path / "dpo", progress=False)
    assert not (tmp_path / "dpo" / "dataset_dict.json").exists()


# --------------------------------------------------------------------------- Flow-GRPO reward


def test_flow_grpo_scorer_takes_tensors_and_arrays_and_imputes_failures():
    judge = BrightnessJudge(fail_when=lambda r: brightness(r.media[0]) > 0.9)
    scorer = UnifiedRewardScorer(UnifiedReward(judge), resize=None)
    images = torch.stack([torch.full((3, 16, 16), v) for v in (0.0, 0.5, 1.0, 1.0)])  # NCHW in [0, 1]
    scores, info = scorer(images, ["p", "p", "p", "q"], [{}] * 4)
    assert scores[0] == pytest.approx(1 / 5) and scores[1] == pytest.approx((1 + 4 * 128 / 255) / 5, abs=1e-3)
    # the failed image of prompt p gets p's mean (no NaN for Flow-GRPO's stat tracker); q has no successful score:
    # the batch's mean (one value for its whole group: advantage 0), counted
    assert scores[2] == pytest.approx((scores[0] + scores[1]) / 2) and scores[3] == pytest.approx(scores[2])
    assert info["num_failed"] == 2 and info["imputed"] == [False, False, True, True] and info["failed_groups"] == 1
    assert info["status"][2] == "parse_error" and info["raw_score"][2] is None
    array = (images.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)  # NHWC uint8
    assert np.allclose(scorer(array, ["p"] * 4)[0][:2], scores[:2], atol=1e-3)
    strict = UnifiedRewardScorer(UnifiedReward(judge), impute=None, resize=None)
    assert np.isnan(strict(images, ["p"] * 4)[0][2])
    assert scorer.__name__ == "unifiedreward"
    with pytest.raises(ValueError):
        split_images(torch.zeros(3, 8, 8))
    assert [im.size for im in split_images(images[:1], resize=512)] == [(512, 512)]  # as upstream Flow-GRPO


def test_flow_grpo_winrate_groups_by_prompt_and_skips_failed_games():
    judge = BrightnessJudge()
    scorer = UnifiedRewardWinRateScorer(UnifiedReward(judge), swap=False, resize=None)
    images = [Image.new("RGB", (8, 8), (v,) * 3) for v in (10, 100, 200, 50, 60)]
    scores, info = scorer(images, ["a", "a", "a", "b", "c"], None)
    assert scores[:3].tolist() == [0.0, 0.5, 1.0]
    # alone in their group, nothing to compare with: the batch's mean win rate, counted
    assert scores[3] == scores[4] == pytest.approx(0.5) and info["failed_groups"] == 2
    assert info["comparisons"] == 3 and info["failed_comparisons"] == 0
    assert UnifiedRewardWinRateScorer(UnifiedReward(judge), impute=None, resize=None)(images[3:], ["b", "c"])[0].tolist() == [
        pytest.approx(np.nan, nan_ok=True)] * 2


def test_flow_grpo_factory_reads_template_and_mode(toy_world, monkeypatch):
    monkeypatch.setenv("UNIFIEDREWARD_MODEL", toy_world["reward_model"])
    monkeypatch.setenv("UNIFIEDREWARD_MODE", "logit")
    monkeypatch.setenv("UNIFIEDREWARD_TEMPLATE", "image_generation.point_score.v1")  # a Qwen judge: a Qwen-format template
    assert "device" in unifiedreward_score.__code__.co_varnames  # how multi_score decides to call factory(device)
    scorer = unifiedreward_score("cpu", resize=64)  # template and mode from the env (small images: CPU time)
    assert (scorer.mode, scorer.template.key, scorer.scaled(5.0)) == ("logit", "image_generation.point_score.v1", 1.0)
    scores, info = scorer(torch.rand(2, 3, 32, 32), ["a red circle", "a blue square"], None)
    assert np.isfinite(scores).all() and info["num_failed"] == 0  # logit mode: an expected score, never a parse


def test_flow_grpo_calls_take_their_turn_in_ticket_order():
    """Tickets are taken on entry; turns follow them whatever order the threads get there in."""
    import threading

    from integrations.diffusers.flow_grpo_reward import CallOrder

    order, done = CallOrder(), []
    tickets = [order.take() for _ in range(4)]

    def call(ticket):
        with order.turn(ticket):
            done.append(ticket)

    threads = [threading.Thread(target=call, args=(t,)) for t in reversed(tickets)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert done == tickets


def multi_score_builds(factory, device="cpu"):
    """How flow_grpo/rewards.py::multi_score builds each reward (yifan123/flow_grpo ac4c86e)."""
    return factory(device) if "device" in factory.__code__.co_varnames else factory()


def test_flow_grpo_docstring_example_runs_under_multi_score(toy_world, monkeypatch):
    """Issue 24 item 11: the factory's docstring advised functools.partial, which multi_score cannot build."""
    import functools
    import textwrap

    from integrations.diffusers import flow_grpo_reward

    monkeypatch.setenv("UNIFIEDREWARD_MODEL", toy_world["reward_model"])
    with pytest.raises(AttributeError, match="__code__"):  # the old advice
        multi_score_builds(functools.partial(unifiedreward_score, mode="logit"))
    block = []
    for line in flow_grpo_reward.__doc__.split("::\n", 1)[1].splitlines():  # the module docstring's example
        if line and not line.startswith("    "):
            break
        block.append(line)
    namespace = {"score_functions": {}}
    exec(textwrap.dedent("\n".join(block)), namespace)
    built = {name: multi_score_builds(factory) for name, factory in namespace["score_functions"].items()}
    assert set(built) == {"unifiedreward", "unifiedreward_winrate"} and built["unifiedreward"].mode == "logit"
    assert built["unifiedreward"].reward_model is built["unifiedreward_winrate"].reward_model  # one judge


def test_flow_grpo_scorer_with_the_toy_reward_model(toy_world):
    """The real tiny Qwen2.5-VL: each item is either a valid score or NaN with a reason, never a made-up 0."""
    scorer = UnifiedRewardScorer(UnifiedReward.from_pretrained(toy_world["reward_model"], max_new_tokens=8), impute=None)
    images = torch.rand(2, 3, 32, 32)
    scores, info = scorer(images, ["a red circle on the left", "a blue square"], None)
    for score, status, error in zip(scores, info["status"], info["error"]):
        assert (status == "ok" and 0.2 <= score <= 1.0) or (np.isnan(score) and error)


def test_training_step_pieces_learn_a_fixed_draw_with_adapters_off_as_reference(toy_world):
    """DenoisingLoss + ReferenceModel (LoRA disabled) + the DPO loss: on one fixed (noise, t) draw the
    implicit accuracy must reach 1 and the margin grow, while the reference stays the frozen base."""
    from accelerate import Accelerator
    from peft import LoraConfig

    from integrations.diffusers import train_diffusion_dpo as script

    torch.manual_seed(0)
    args = script.parse_args(["--pretrained_model_name_or_path", toy_world["sd_model"], "--dataset_name", "unused",
                              "--resolution", "16"])
    accelerator = Accelerator(mixed_precision="no", cpu=True)
    noise_scheduler, vae, unet, conditioner = script.load_components(args)
    assert not conditioner.is_sdxl
    unet.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian",
                                target_modules=script.LORA_TARGET_MODULES))
    optimizer = torch.optim.AdamW([p for p in unet.parameters() if p.requires_grad], lr=1e-3)
    unet, optimizer = accelerator.prepare(unet, optimizer)

    pixels = torch.cat([torch.rand(4, 3, 16, 16) * 2 - 1, torch.rand(4, 3, 16, 16) * 2 - 1], dim=1)
    latents = script.encode_pairs(vae, pixels, batch_size=8, sample=False)
    noise = torch.randn_like(latents[:4]).repeat(2, 1, 1, 1)
    timesteps = script.sample_timesteps(4, noise_scheduler, is_turbo=True)
    assert set(timesteps.tolist()) <= set(script.TURBO_TIMESTEPS) and torch.equal(timesteps[:4], timesteps[4:])
    loss_fn, reference = script.DenoisingLoss(noise_scheduler), script.ReferenceModel(accelerator, unet)
    noisy, target = loss_fn.prepare(latents, noise, timesteps)
    conditioning = script.expand_conditioning(conditioner(["a red circle"] * 4, "cpu", torch.float32))
    reference_before = reference.losses(loss_fn, noisy, timesteps, conditioning, target)
    for step in range(12):
        model_losses = loss_fn(unet, noisy, timesteps, conditioning, target)
        ref_losses = reference.losses(loss_fn, noisy, timesteps, conditioning, target)
        output = diffusion_dpo_loss(model_losses, ref_losses, beta_dpo=500)
        if step == 0:
            assert output.implicit_accuracy.item() == 0.5  # B = 0: the adapter starts as the reference
        accelerator.backward(output.loss)
        optimizer.step()
        optimizer.zero_grad()
    assert output.implicit_accuracy.item() == 1.0 and output.margins.min() > 0
    assert torch.allclose(reference.losses(loss_fn, noisy, timesteps, conditioning, target), reference_before)


def test_sift_with_the_toy_reward_model_in_logit_mode(toy_world, tmp_path):
    """The real tiny Qwen2.5-VL through reward_core: every prompt gets a decision with a reason; kept pairs are
    strictly ordered by score."""
    from unifiedreward.sift import SiftSettings

    write_candidates(tmp_path / "c", [[10, 200, 90, 60], [30, 140, 220, 70]])
    settings = SiftSettings(pair_template="image_generation.pair_rank.v1",
                            point_template="image_generation.point_score.v1", mode="logit")
    reward_model = UnifiedReward.from_pretrained(toy_world["reward_model"])
    try:
        result = sift_candidates(reward_model, tmp_path / "c", tmp_path / "dpo", settings, progress=False)
    except RuntimeError as error:  # nothing kept: allowed, but then every record must say why
        assert "No pair was kept" in str(error)
        result = None
    records = [json.loads(line) for line in (tmp_path / "dpo" / "sift.jsonl").read_text().splitlines()]
    assert len(records) == 2
    for record in records:
        assert record["status"] in ("kept", "dropped", "failed")
        if record["status"] == "kept":
            assert record["chosen_score"] > record["rejected_score"]
        else:
            assert record["reason"] and record["chosen_index"] is None
    if result is not None:
        assert result["kept"] == sum(r["status"] == "kept" for r in records)


def test_candidate_ids_become_file_names_inside_the_output_folder():
    from integrations.diffusers.sift_images import file_stem

    assert file_stem("prompt-000001") == "prompt-000001"  # safe ids are kept
    hostile = ["../../X", "/etc/passwd", "a/b", "a\\b", "..", ".", "", "a\x00b", "é/ü"]
    stems = [file_stem(i) for i in hostile]
    assert all("/" not in s and "\\" not in s and "\x00" not in s and s.strip(".") for s in stems)
    assert len(set(stems + [file_stem("a_b")])) == len(hostile) + 1  # never two ids on one name
