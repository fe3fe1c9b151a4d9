"""Transformers backend on the toy Qwen2.5-VL: upstream-identical inputs, batching, per-item errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from PIL import Image

from reward_core.backends.base import BackendRequest
from reward_core.backends.transformers_backend import TransformersBackend, collate
from reward_core.media import VideoSpec, load_image
from reward_core.prompts import get_template

os.environ.setdefault("OMP_NUM_THREADS", "2")


def rows(toy_world, name: str, count: int) -> list[dict]:
    lines = Path(toy_world["data"][name]).read_text().splitlines()[:count]
    return [json.loads(line) for line in lines]


def media_path(toy_world, relative: str) -> str:
    return str(Path(toy_world["data_dir"]) / relative)


@pytest.fixture(scope="module")
def backend(toy_world):
    torch.manual_seed(0)
    return TransformersBackend.from_pretrained(toy_world["reward_model"], device="cpu", batch_size=4)


def upstream_inputs(processor, content: list[dict], text: str) -> dict:
    """What upstream's inference_qwen scripts build (transformers 5 processors take the video metadata
    instead of the per-video ``fps`` list that qwen-vl-utils' ``video_kwargs`` used to carry)."""
    from qwen_vl_utils import process_vision_info

    messages = [{"role": "user", "content": content + [{"type": "text", "text": text}]}]
    prompt = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    images, videos, video_kwargs = process_vision_info(messages, return_video_kwargs=True, return_video_metadata=True)
    kwargs = {}
    if videos is not None:
        frames, metadata = zip(*videos)
        kwargs = {"videos": list(frames), "video_metadata": list(metadata), **video_kwargs}
    return dict(processor(text=[prompt], images=images, padding=True, return_tensors="pt", **kwargs))


def assert_same_inputs(ours: dict, reference: dict) -> None:
    assert set(ours) == set(reference)
    for key, value in reference.items():
        if isinstance(value, torch.Tensor):
            torch.testing.assert_close(ours[key], value, rtol=0, atol=0, msg=f"{key} differs")
        else:
            assert ours[key] == value, key


def test_image_pair_inputs_match_upstream(backend, toy_world):
    row = rows(toy_world, "image_pairs", 1)[0]
    paths = [media_path(toy_world, p) for p in row["images"]]
    text = get_template("image_generation.pair_rank.v1").render(prompt=row["prompt"])
    ours = backend.encode(BackendRequest(media=paths, text=text)).inputs
    reference = upstream_inputs(backend.processor, [{"type": "image", "image": Image.open(p)} for p in paths], text)
    assert_same_inputs(ours, reference)
    assert ours["image_grid_thw"].shape[0] == 2
    vision_start = backend.tokenizer.convert_tokens_to_ids("<|vision_start|>")
    assert int((ours["input_ids"] == vision_start).sum()) == 2


def test_single_image_inputs_match_upstream(backend, toy_world):
    row = rows(toy_world, "image_points", 1)[0]
    path = media_path(toy_world, row["image"])
    text = get_template("image_generation.point_score.v1").render(prompt=row["prompt"])
    ours = backend.encode(BackendRequest(media=[load_image(path)], text=text)).inputs
    assert_same_inputs(ours, upstream_inputs(backend.processor, [{"type": "image", "image": Image.open(path)}], text))


@pytest.mark.parametrize("count", [1, 2])
def test_video_inputs_match_upstream(backend, toy_world, count):
    row = rows(toy_world, "video_pairs", 1)[0]
    paths = [media_path(toy_world, p) for p in row["videos"]][:count]
    key = "video_generation.point_score.v1" if count == 1 else "video_generation.pair_rank.v1"
    text = get_template(key).render(prompt=row["prompt"])
    ours = backend.encode(BackendRequest(media=[VideoSpec(p) for p in paths], text=text)).inputs
    reference = upstream_inputs(backend.processor, [{"type": "video", "video": p} for p in paths], text)
    assert_same_inputs(ours, reference)
    assert ours["video_grid_thw"].shape[0] == count and "pixel_values" not in ours


def test_frames_as_images_feed_eight_images_per_video(backend, toy_world):
    row = rows(toy_world, "video_pairs", 1)[0]
    spec = VideoSpec(media_path(toy_world, row["videos"][0]), as_frames=True)
    inputs = backend.encode(BackendRequest(media=[spec], text="Rate it.")).inputs
    assert inputs["image_grid_thw"].shape[0] == 8 and "pixel_values_videos" not in inputs


def test_prompt_text_is_rendered_once_per_layout_and_equals_a_fresh_render(toy_world, monkeypatch):
    """Images differ, the layout (media kinds + text) repeats: one render; a changed template or text renders anew."""
    backend = TransformersBackend.from_pretrained(toy_world["reward_model"], device="cpu", vision_cache=False)
    processor = backend.processor
    renders = []
    render = processor.apply_chat_template
    monkeypatch.setattr(processor, "apply_chat_template", lambda *a, **k: renders.append(1) or render(*a, **k))
    red, blue = Image.new("RGB", (28, 28), "red"), Image.new("RGB", (56, 28), "blue")
    first, _ = backend.prompt_text(BackendRequest(media=[red, blue], text="Which is better?"))
    again, messages = backend.prompt_text(BackendRequest(media=[blue, red], text="Which is better?"))
    assert first == again == render(messages, tokenize=False, add_generation_prompt=True) and len(renders) == 1
    backend.prompt_text(BackendRequest(media=[red], text="Which is better?"))  # one image: another layout
    backend.prompt_text(BackendRequest(media=[red, blue], text="Rate them."))
    assert len(renders) == 3
    processor.chat_template = processor.chat_template.replace("You are a helpful assistant.", "You judge images.")
    changed, _ = backend.prompt_text(BackendRequest(media=[red, blue], text="Which is better?"))
    assert len(renders) == 4 and "You judge images." in changed
    backend.chat_template_kwargs = {"add_vision_id": True}
    numbered, _ = backend.prompt_text(BackendRequest(media=[red, blue], text="Which is better?"))
    assert len(renders) == 5 and "Picture 2: " in numbered


def test_collate_equals_the_processor_batch(backend, toy_world):
    pairs = rows(toy_world, "image_pairs", 2)
    template = get_template("image_generation.pair_rank.v1")
    requests, contents, texts = [], [], []
    for i, row in enumerate(pairs):
        images = [load_image(media_path(toy_world, p)) for p in row["images"]]
        if i == 0:  # different sizes -> different prompt lengths -> padding is exercised
            images = [image.resize((112, 84)) for image in images]
        requests.append(BackendRequest(media=images, text=template.render(prompt=row["prompt"])))
    encoded = [backend.encode(r) for r in requests]
    assert encoded[0].length != encoded[1].length
    processor = backend.processor
    for request in requests:
        content = [{"type": "image", "image": im} for im in request.media] + [{"type": "text", "text": request.text}]
        messages = [{"role": "user", "content": content}]
        texts.append(processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
        contents += list(request.media)
    from qwen_vl_utils import fetch_image

    images = [fetch_image({"image": image}) for image in contents]
    processor.tokenizer.padding_side = "left"
    reference = dict(processor(text=texts, images=images, padding=True, return_tensors="pt"))
    assert_same_inputs(collate(encoded, backend.pad_token_id), reference)


def test_joint_encoding_equals_item_by_item(backend, toy_world, tmp_path):
    pair, point = rows(toy_world, "image_pairs", 1)[0], rows(toy_world, "image_points", 1)[0]
    video = rows(toy_world, "video_pairs", 1)[0]
    images = [load_image(media_path(toy_world, p)) for p in pair["images"]]
    requests = [
        BackendRequest(media=[images[0].resize((112, 56)), images[1]], text="Compare these."),
        BackendRequest(media=[VideoSpec(media_path(toy_world, video["videos"][0]))], text="Rate the video."),
        BackendRequest(media=[str(tmp_path / "gone.png")], text="Rate."),
        BackendRequest(media=[media_path(toy_world, point["image"])], text="Rate the image, please."),
        BackendRequest(media=[VideoSpec(media_path(toy_world, v)) for v in video["videos"]], text="Compare videos."),
    ]
    encoded, errors = backend._encode_all(requests)
    assert encoded[2] is None and "gone.png: file not found" in errors[2].message and errors[2].media
    joint = backend._process_together([backend._prepare(requests[i]) for i in (0, 1, 3, 4)])  # no silent fallback
    for index, together in zip((0, 1, 3, 4), joint):
        assert errors[index] is None
        assert_same_inputs(encoded[index].inputs, backend.encode(requests[index]).inputs)
        assert_same_inputs(together.inputs, encoded[index].inputs)


def test_batched_generation_equals_one_at_a_time(backend, toy_world):
    template = get_template("image_generation.pair_rank.v1")
    requests = []
    for i, row in enumerate(rows(toy_world, "image_pairs", 4)):
        images = [load_image(media_path(toy_world, p)) for p in row["images"]]
        images = [im.resize((56 + 28 * (i % 3), 56)) for im in images]  # mixed lengths within a batch
        requests.append(BackendRequest(media=images, text=template.render(prompt=row["prompt"])))
    batched = backend.generate(requests, max_new_tokens=6)
    single = [backend.generate([r], max_new_tokens=6)[0] for r in requests]
    assert all(g.error is None and g.text for g in batched)
    assert [g.text for g in batched] == [g.text for g in single]


def test_bad_items_fail_alone(backend, toy_world, tmp_path):
    row = rows(toy_world, "image_pairs", 1)[0]
    good = [media_path(toy_world, p) for p in row["images"]]
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"not an image")
    requests = [
        BackendRequest(media=good, text="Compare."),
        BackendRequest(media=[str(tmp_path / "missing.png"), good[1]], text="Compare."),
        BackendRequest(media=[str(corrupt), good[1]], text="Compare."),
        BackendRequest(media=[VideoSpec(str(corrupt))], text="Rate."),
        BackendRequest(media=good, text="Compare."),
    ]
    results = backend.generate(requests, max_new_tokens=3)
    assert results[0].error is None and results[4].error is None and results[0].text == results[4].text
    assert "missing.png: file not found" in results[1].error
    assert "corrupt.png: cannot decode image" in results[2].error
    assert "corrupt.png" in results[3].error
    assert all(r.text is None for r in results[1:4])


def test_out_of_memory_batch_is_retried_item_by_item(backend, toy_world, monkeypatch):
    row = rows(toy_world, "image_pairs", 1)[0]
    request = BackendRequest(media=[media_path(toy_world, p) for p in row["images"]], text="Compare.")
    expected = backend.generate([request], max_new_tokens=3)[0].text
    real = backend._generate_batch
    sizes = []

    def flaky(batch, max_new_tokens, **options):
        sizes.append(batch["input_ids"].shape[0])
        if batch["input_ids"].shape[0] > 1:
            raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real(batch, max_new_tokens, **options)

    monkeypatch.setattr(backend, "_generate_batch", flaky)
    results = backend.generate([request] * 3, max_new_tokens=3)
    assert sizes == [3, 1, 1, 1]
    assert [r.text for r in results] == [expected] * 3


def test_generation_is_greedy_and_stops_at_max_new_tokens(backend, toy_world):
    row = rows(toy_world, "image_points", 1)[0]
    request = BackendRequest(media=[media_path(toy_world, row["image"])], text="Rate.")
    short, again, longer = (backend.generate([request], n)[0].text for n in (3, 3, 8))
    assert short == again  # deterministic
    assert longer.startswith(short) and len(longer) > len(short)  # same greedy path, cut at the budget


def test_prefetched_groups_match_inline_and_single_item_runs(backend, toy_world, tmp_path, monkeypatch):
    """Batch 2 over 5 requests (one broken) makes several groups; encoding the next group in a background
    thread changes no result, keeps errors in place, and matches one-request runs."""
    import threading

    template = get_template("image_generation.pair_rank.v1")
    requests = []
    for i, row in enumerate(rows(toy_world, "image_pairs", 4)):
        images = [load_image(media_path(toy_world, p)).resize((56 + 28 * (i % 2), 56)) for p in row["images"]]
        requests.append(BackendRequest(images, template.render(prompt=row["prompt"]), template.answer_prefix))
    good = requests[0].media
    requests.insert(2, BackendRequest([str(tmp_path / "gone.png"), good[1]], "Compare.", template.answer_prefix))
    small = TransformersBackend(backend.model, backend.processor, batch_size=2)
    threads = []
    real_encode = small._encode_all

    def recording_encode(group):
        threads.append(threading.current_thread().name)
        return real_encode(group)

    monkeypatch.setattr(small, "_encode_all", recording_encode)
    prefetched = small.answer_logprobs(requests, ["1", "2"])
    prefetched_texts = [g.text for g in small.generate(requests, max_new_tokens=3)]
    assert len(threads) == 6 and all(name.startswith("unifiedreward-encode") for name in threads)
    threads.clear()
    small.prefetch = False
    inline = small.answer_logprobs(requests, ["1", "2"])
    assert [g.text for g in small.generate(requests, max_new_tokens=3)] == prefetched_texts
    assert threads == [threading.current_thread().name] * 6
    assert "gone.png: file not found" in prefetched[2].error and prefetched_texts[2] is None
    for index, (threaded, plain) in enumerate(zip(prefetched, inline)):
        assert (threaded.error, threaded.logprobs) == (plain.error, plain.logprobs)
        if index != 2:
            (single,) = backend.answer_logprobs([requests[index]], ["1", "2"])
            assert threaded.error is None and threaded.logprobs == pytest.approx(single.logprobs, abs=1e-4)


# --- Qwen3-VL: one resize, the server's token grid ----------------------------------------------------------------


@pytest.fixture(scope="module")
def qwen3_vl_backend(toy_world):
    """A Qwen3-VL-shaped judge built here (no hub): a tiny random Qwen3-VL from its config and a ``Qwen3VLProcessor``
    around the toy judge's tokenizer and chat template, with the released Qwen3-VL checkpoints' image settings
    (patch 16, merge 2, mean / std 0.5, ``size`` 256x256 .. 4096x4096 px)."""
    from test_tree_scoring_backbones import qwen3_vl
    from transformers import AutoTokenizer, Qwen2VLImageProcessor, Qwen3VLProcessor, Qwen3VLVideoProcessor

    folder = Path(toy_world["reward_model"])
    image_processor = Qwen2VLImageProcessor(
        patch_size=16, merge_size=2, temporal_patch_size=2, image_mean=[0.5] * 3, image_std=[0.5] * 3,
        size={"shortest_edge": 256 * 256, "longest_edge": 4096 * 4096},
    )  # fmt: skip
    processor = Qwen3VLProcessor(
        image_processor=image_processor, tokenizer=AutoTokenizer.from_pretrained(folder),
        video_processor=Qwen3VLVideoProcessor(patch_size=16, merge_size=2, temporal_patch_size=2),
        chat_template=(folder / "chat_template.jinja").read_text(),
    )  # fmt: skip
    torch.manual_seed(0)
    return TransformersBackend(qwen3_vl(), processor, vision_cache=False)


@pytest.mark.parametrize("size", [(150, 100), (200, 37), (90, 90), (300, 400)])
def test_qwen3_vl_images_get_the_servers_token_grid_from_one_resize(qwen3_vl_backend, size):
    """Upstream runs Qwen3-VL judges behind vLLM, whose processor resizes each image once within its ``size``
    bounds. Ours must give that token grid (a second resize after qwen-vl-utils' own one gave another grid under
    ~256x256 px, e.g. 14x22 instead of 14x20 patches for 150x100), from one resize: qwen-vl-utils' at the
    processor's bounds, then ``do_resize=False`` (the Qwen3-VL model card's recipe)."""
    from qwen_vl_utils import smart_resize
    from test_media_protocol import gradient

    processor = qwen3_vl_backend.processor
    image = gradient(*size)
    ours = qwen3_vl_backend.encode(BackendRequest(media=[image], text="Rate it.")).inputs
    text, _ = qwen3_vl_backend.prompt_text(BackendRequest(media=[image], text="Rate it."))
    server = processor(text=[text], images=[image], return_tensors="pt")  # what vLLM's processor call builds
    assert ours["image_grid_thw"].tolist() == server["image_grid_thw"].tolist()
    assert torch.equal(ours["input_ids"], server["input_ids"])
    height, width = smart_resize(size[1], size[0], factor=32, min_pixels=256 * 256, max_pixels=4096 * 4096)
    once = processor(text=[text], images=[image.resize((width, height))], do_resize=False, return_tensors="pt")
    assert torch.equal(ours["pixel_values"], once["pixel_values"])
