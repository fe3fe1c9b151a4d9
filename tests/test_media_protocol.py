"""Media protocol per template family against upstream's script logic, in-process and over HTTP.

Upstream's frame readers use OpenCV (not installed here); the references below re-implement their index
rules and encodings (``int(i*n/N)`` with a sequential read and JPEG files for 2.0, ``np.linspace`` with seeks
for Think-qwen3 / Flex) on decord-decoded frames, so what is compared is the selection, order, resizing and
JPEG chain, not OpenCV's decoder. The toy judge's real processor builds the model inputs on both sides.
"""

from __future__ import annotations

import base64
import io

import decord
import numpy as np
import pytest
import torch
from PIL import Image

from reward_core.backends.base import BackendRequest
from reward_core.backends.openai_messages import media_parts
from reward_core.media import VideoSpec, prepare_media
from reward_core.media_protocol import (
    FRAMES,
    JPEG_INFO,
    LINSPACE,
    NATIVE,
    STRIDE,
    apply_protocol,
    protocol_for,
)
from reward_core.prompts import get_template, list_templates
from unifiedreward.toy.data import write_video

TOTAL = 37  # frame count of the test videos: the index rules differ on it
STEP = 6  # frame k is a flat grey of level k * STEP, so a frame's index can be read back


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> list[str]:
    folder = tmp_path_factory.mktemp("protocol")
    paths = []
    for offset in (0, 1):  # the second video is one grey step brighter: its frames are told apart
        frames = [Image.new("RGB", (64, 48), ((k + offset) * STEP,) * 3) for k in range(TOTAL)]
        path = folder / f"v{offset}.mp4"
        write_video(frames, path)
        paths.append(str(path))
    return paths


def frame_index(image: Image.Image, offset: int = 0) -> int:
    return round(float(np.asarray(image.convert("L")).mean()) / STEP) - offset


def jpeg(image: Image.Image, quality: int = 95) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def decoded(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as opened:
        return opened.convert("RGB")


# --- upstream script logic --------------------------------------------------------------------------


def upstream_2_0_frames(path: str, num_frames: int) -> list[bytes]:
    """``read_video_frames`` (UnifiedReward-2.0-inference) + ``vllm_request.py``'s encoder: frames whose index is in
    ``[int(i*total/num_frames)]``, read in order, saved as JPEG q95 files, re-read and sent as JPEG q95."""
    reader = decord.VideoReader(path)
    selected = [int(i * len(reader) / num_frames) for i in range(num_frames)]
    sent = []
    for current in range(len(reader)):
        if current in selected:
            frame_file = jpeg(Image.fromarray(reader[current].asnumpy()))  # cv2.imwrite default quality 95
            sent.append(jpeg(decoded(frame_file)))  # Image.open(path).convert("RGB") -> JPEG q95 base64
        if len(sent) >= num_frames:
            break
    return sent


def upstream_linspace_frames(path: str, num_frames: int = 8) -> list[bytes]:
    """``extract_frames`` (Think-qwen3 / Flex): ``np.linspace(0, n-1, N)`` seeks, then ``_encode_image`` (JPEG q95)."""
    reader = decord.VideoReader(path)
    indices = np.linspace(0, len(reader) - 1, num_frames).astype(int)
    return [jpeg(Image.fromarray(reader[int(i)].asnumpy())) for i in indices]


FAMILIES = {
    "video_generation.pair_score.v2": lambda p: upstream_2_0_frames(p, 8),
    "video_generation.point_score_aps.v2": lambda p: upstream_2_0_frames(p, 16),
    "think.qwen3.video_generation.pair_rank": upstream_linspace_frames,
    "think.qwen3.video_understanding.pair_rank": upstream_linspace_frames,
    "flex.video_generation.pair_rank": upstream_linspace_frames,
}


def sent_bytes(media: list) -> list[bytes]:
    return [m.info[JPEG_INFO] for m in media]


@pytest.mark.parametrize("key", sorted(FAMILIES))
def test_frames_and_their_bytes_match_upstream(videos, key):
    template = get_template(key)
    media = videos[: template.media_count]
    ours = apply_protocol(template, [VideoSpec(p) for p in media])
    reference = [frame for path in media for frame in FAMILIES[key](path)]
    assert sent_bytes(ours) == reference  # the same frames, order (video 1 first) and JPEG bytes
    assert all(np.array_equal(np.asarray(a), np.asarray(decoded(b))) for a, b in zip(ours, reference))
    per_video = len(reference) // len(media)
    expected = protocol_for(template).indices(TOTAL)
    for v, offset in enumerate(range(len(media))):
        assert [frame_index(f, offset) for f in ours[v * per_video : (v + 1) * per_video]] == expected


def test_index_rules():
    assert protocol_for(get_template("video_generation.pair_score.v2")).indices(TOTAL) == [0, 4, 9, 13, 18, 23, 27, 32]
    assert protocol_for(get_template("flex.video_generation.pair_rank")).indices(TOTAL) == [0, 5, 10, 15, 20, 25, 30, 36]
    aps = protocol_for(get_template("video_generation.point_score_aps.v2"))
    assert aps.frames == 16 and aps.indices(5) == [0, 1, 2, 3, 4]  # a sequential read yields each frame once
    assert protocol_for(get_template("think.qwen3.video_generation.pair_rank")).indices(3) == [0, 0, 0, 0, 1, 1, 1, 2]


def test_every_video_template_declares_its_protocol():
    native = {"video_generation.pair_rank.v1", "video_generation.point_score.v1", "video_understanding.pair_rank.v1",
              "video_understanding.point_score.v1", "think.video_generation.pair_rank",
              "think.video_understanding.pair_rank"}  # fmt: skip
    for key in list_templates():
        template = get_template(key)
        if not template.media.startswith("video"):
            continue
        protocol = protocol_for(template)
        assert protocol.source, key
        assert protocol.video == (NATIVE if key in native else FRAMES), key
        if not key.startswith("bench.") and (key.endswith(".llava") or key.startswith("preference.")):
            assert (protocol.sampler, protocol.size, protocol.frames) == (LINSPACE, (512, 512), 8), key
        if key.startswith("dpo."):  # VideoDPO's sift: opencv_extract_frames, its img.resize((512, 512)) discarded
            assert (protocol.sampler, protocol.size, protocol.frames) == (LINSPACE, None, 8), key
    assert protocol_for(get_template("video_generation.pair_score.v2")).sampler == STRIDE


def test_llava_frames_are_resized_to_512(videos):
    frames = apply_protocol(get_template("video_generation.point_score.v1.llava"), [VideoSpec(videos[0])])
    assert len(frames) == 8 and {f.size for f in frames} == {(512, 512)}


@pytest.mark.parametrize("key", ["dpo.video_generation.point_score", "dpo.video_generation.pair_rank"])
def test_video_dpo_frames_keep_their_size(videos, key):
    """VideoDPO's ``sift_dpo_data.py`` calls ``img.resize((512, 512))`` and drops the result: its judge sees the
    8 ``np.linspace`` frames at the video's own size (pairs: video 1's frames, then video 2's)."""
    specs = [VideoSpec(p) for p in videos[: get_template(key).media_count]]
    frames = apply_protocol(get_template(key), specs)
    linspace = np.linspace(0, TOTAL - 1, 8).astype(int)
    expected = [Image.fromarray(decord.VideoReader(s.path)[i].asnumpy()) for s in specs for i in linspace]
    assert [f.size for f in frames] == [(64, 48)] * len(expected)
    assert all(np.array_equal(np.asarray(f), np.asarray(e)) for f, e in zip(frames, expected))


def upstream_512(image: Image.Image) -> Image.Image:
    """Flow-GRPO / ``sglang_inference.py`` (``Image.fromarray(array).resize((512, 512))``) and DiffusionDPO's sift
    (``Image.open(path).resize((512, 512))``): PIL's default filter (bicubic)."""
    return image.resize((512, 512))


@pytest.mark.parametrize("key", ["image_generation.point_score.sglang_v1.5", "dpo.image_generation.point_score",
                                 "dpo.image_generation.pair_rank"])  # fmt: skip
def test_sglang_and_diffusion_dpo_images_are_resized_to_512(key):
    template = get_template(key)
    pictures = [gradient(300 + 20 * i, 200) for i in range(template.media_count)]
    fed = apply_protocol(template, prepare_media(pictures, "image", template.media_count))
    assert [f.size for f in fed] == [(512, 512)] * len(pictures)
    assert all(np.array_equal(np.asarray(f), np.asarray(upstream_512(p))) for f, p in zip(fed, pictures))
    for other in ("image_generation.point_score.v1", "image_generation.point_score.v1.llava",
                  "preference.image_understanding.point_score"):  # fmt: skip
        [kept] = apply_protocol(get_template(other), prepare_media(pictures[:1], "image", 1))
        assert kept.size == (300, 200), other


def gradient(width: int, height: int, alpha: bool = False) -> Image.Image:
    """Pixels that every resampling, compositing or alpha rule changes (alpha: a ramp from 0 to 255)."""
    x, y = np.meshgrid(np.linspace(0, 255, width), np.linspace(0, 255, height))
    channels = [x, y, 255 - x] + ([y] if alpha else [])
    return Image.fromarray(np.stack(channels, axis=-1).astype(np.uint8))


@pytest.mark.parametrize("key", ["edit.point_score_quality", "image_generation.pair_score.v2",
                                 "think.qwen3.image_generation.pair_rank", "flex.image_generation.pair_rank",
                                 "image_generation.point_score.v1.llava", "preference.image_understanding.point_score",
                                 "dpo.image_generation.point_score"])  # fmt: skip
def test_rgba_loses_its_alpha_like_upstreams_convert_rgb(key, tmp_path):
    """Upstream's vLLM clients (``Image.open(p).convert("RGB")``) and LLaVA scripts drop the alpha channel, colours
    as stored (not composited on white or black); the image then travels as upstream sends it."""
    template = get_template(key)
    rgba = gradient(64, 48, alpha=True)
    path = tmp_path / "rgba.png"
    rgba.save(path)
    for source in (rgba, str(path), np.asarray(rgba)):  # a PIL image, a PNG file and an HWC array
        fed = apply_protocol(template, prepare_media([source] * template.media_count, "image", template.media_count))
        expected = upstream_512(rgba).convert("RGB") if key.startswith("dpo.") else rgba.convert("RGB")
        for image in fed:
            assert image.mode == "RGB"
            if JPEG_INFO in image.info:  # vLLM family: the bytes sent are upstream's JPEG q95 of convert("RGB")
                assert image.info[JPEG_INFO] == jpeg(expected)
            else:
                assert np.array_equal(np.asarray(image), np.asarray(expected))


def test_rgba_is_composited_on_white_for_qwen_vl_utils_templates():
    """``inference_qwen`` hands the opened image to qwen-vl-utils, whose ``to_rgb`` composites RGBA on white."""
    from qwen_vl_utils import fetch_image
    from qwen_vl_utils.vision_process import to_rgb as qwen_vl_utils_to_rgb

    rgba = gradient(64, 48, alpha=True)
    [fed] = apply_protocol(get_template("image_generation.point_score.v1"), prepare_media([rgba], "image", 1))
    assert np.array_equal(np.asarray(fed), np.asarray(qwen_vl_utils_to_rgb(rgba)))
    assert np.array_equal(np.asarray(fetch_image({"image": fed})), np.asarray(fetch_image({"image": rgba})))


def test_native_video_keeps_qwen_vl_utils_defaults_and_explicit_settings_win(videos):
    template = get_template("video_generation.point_score.v1")
    assert apply_protocol(template, [VideoSpec(videos[0])]) == [VideoSpec(videos[0])]
    assert apply_protocol(template, [VideoSpec(videos[0], nframes=4)]) == [VideoSpec(videos[0], nframes=4)]
    frames = apply_protocol(get_template("video_generation.pair_score.v2"), [VideoSpec(videos[0], as_frames=True)])
    assert [frame_index(f) for f in frames] == [0, 5, 10, 15, 20, 25, 30, 36] and JPEG_INFO not in frames[0].info


def test_vllm_family_images_travel_as_jpeg_once():
    image = Image.new("RGB", (40, 30), (200, 10, 30))
    [ours] = apply_protocol(get_template("edit.point_score_quality"), [image])
    assert ours.info[JPEG_INFO] == jpeg(image)
    [part] = media_parts([ours])
    assert base64.b64decode(part["image_url"]["url"].split(",", 1)[1]) == jpeg(image)  # not re-encoded
    [classic] = apply_protocol(get_template("image_generation.point_score.v1"), [image])
    assert classic is image  # 1.0 Qwen scripts pass the PIL image as is


@pytest.fixture(scope="module")
def backend(toy_world):
    from reward_core.backends.transformers_backend import TransformersBackend

    return TransformersBackend.from_pretrained(toy_world["reward_model"], device="cpu", batch_size=2)


@pytest.mark.parametrize("key", ["video_generation.pair_score.v2", "think.qwen3.video_generation.pair_rank"])
def test_model_inputs_in_process_equal_what_upstreams_server_decodes(backend, videos, key):
    template = get_template(key)
    text = template.render(prompt="a grey fade")
    ours = backend.encode(BackendRequest(media=apply_protocol(template, [VideoSpec(p) for p in videos]), text=text))
    sent = [decoded(b) for path in videos for b in FAMILIES[key](path)]  # the images vLLM decodes
    content = [{"type": "image", "image": image} for image in sent] + [{"type": "text", "text": text}]
    prompt = backend.processor.apply_chat_template([{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True)
    from qwen_vl_utils import process_vision_info

    images, _ = process_vision_info([{"role": "user", "content": content}], image_patch_size=14)
    reference = backend.processor(text=[prompt], images=images, return_tensors="pt")
    assert torch.equal(ours.inputs["input_ids"], reference["input_ids"])
    assert torch.equal(ours.inputs["pixel_values"], reference["pixel_values"])
    assert ours.inputs["image_grid_thw"].shape[0] == len(sent)


def test_http_sends_the_same_frames(videos):
    template = get_template("video_generation.pair_score.v2")
    parts = media_parts(apply_protocol(template, [VideoSpec(p) for p in videos]))
    sent = [base64.b64decode(p["image_url"]["url"].split(",", 1)[1]) for p in parts]
    assert sent == [b for path in videos for b in upstream_2_0_frames(path, 8)]


@pytest.mark.parametrize("key", ["video_generation.point_score_aps.v2", "video_generation.pair_score.v2", "think.qwen3.video_generation.pair_rank"])
def test_in_memory_video_gets_the_frames_its_file_would(videos, key):
    """A trainer's TCHW tensor (verl-omni's ``solution_image``) goes through the template's frame protocol like the
    file it was decoded from: same frames, same order, same JPEG chain."""
    from reward_core.media import VideoFrames

    template = get_template(key)
    decoded = torch.from_numpy(decord.VideoReader(videos[0]).get_batch(list(range(TOTAL))).asnumpy()).permute(0, 3, 1, 2)
    media = [VideoFrames.from_array(decoded)] * template.media_count
    files = prepare_media([videos[0]] * template.media_count, "video", template.media_count)
    from_memory = apply_protocol(template, prepare_media(media, "video", template.media_count))
    from_file = apply_protocol(template, files)
    assert len(from_memory) == len(from_file) > 1
    assert [m.info.get(JPEG_INFO) for m in from_memory] == [f.info.get(JPEG_INFO) for f in from_file]
    assert all(np.array_equal(np.asarray(m), np.asarray(f)) for m, f in zip(from_memory, from_file))


def test_in_memory_video_is_refused_by_a_native_video_protocol():
    from reward_core.media import MediaError, VideoFrames

    video = VideoFrames.from_array(np.zeros((4, 8, 8, 3), dtype=np.uint8))
    with pytest.raises(MediaError, match="in-memory video needs a template whose protocol sends frames"):
        apply_protocol(get_template("video_generation.point_score.v1"), [video])
    with pytest.raises(MediaError, match="expected a video of shape TCHW"):
        VideoFrames.from_array(np.zeros((8, 8, 3), dtype=np.uint8))
