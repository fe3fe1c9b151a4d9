"""Media loading, validation and the upstream message layout (no model needed)."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
import torch
from PIL import Image

from reward_core.media import (
    DROP,
    FRAMES_PER_VIDEO,
    MediaError,
    VideoSpec,
    build_messages,
    decode_image,
    frame_indices,
    load_image,
    load_video_frames,
    prepare_media,
    to_rgb,
)


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory):
    from reward_core.media import write_video

    root = tmp_path_factory.mktemp("media")
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(root / "image.png")
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n but not really")
    frames = [Image.fromarray(np.full((32, 32, 3), 20 * i, dtype=np.uint8)) for i in range(10)]
    write_video(frames, root / "video.mp4", fps=5)
    (root / "corrupt.mp4").write_bytes(b"definitely not a video")
    return root, pixels


def test_every_image_input_gives_the_same_rgb_image(media_dir):
    root, pixels = media_dir
    path = root / "image.png"
    expected = np.asarray(Image.open(path).convert("RGB"))
    inputs = [
        str(path),
        path,
        f"file://{path}",
        path.read_bytes(),
        Image.open(path),
        pixels,
        pixels.astype(np.float32) / 255.0,
        torch.from_numpy(pixels).permute(2, 0, 1),
        torch.from_numpy(pixels).permute(2, 0, 1).float() / 255.0,
    ]
    for source in inputs:
        image = load_image(source)
        assert image.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(image), expected, err_msg=f"input type {type(source).__name__}")


def test_grayscale_and_rgba_become_rgb_like_qwen_vl_utils():
    gray = load_image(np.full((8, 8), 7, dtype=np.uint8))
    assert gray.mode == "RGB" and gray.getpixel((0, 0)) == (7, 7, 7)
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))  # fully transparent red -> white background
    assert load_image(rgba).getpixel((0, 0)) == (255, 255, 255)
    kept = decode_image(rgba)  # RGBA stays RGBA until the template's protocol flattens it
    assert kept.mode == "RGBA" and kept is not rgba and to_rgb(kept, DROP).getpixel((0, 0)) == (255, 0, 0)
    png = io.BytesIO()
    Image.new("P", (4, 4)).save(png, format="PNG")
    assert load_image(png.getvalue()).mode == "RGB"


@pytest.mark.parametrize(
    "source, reason",
    [
        ("/nonexistent/dir/missing.png", "file not found"),
        (b"garbage", "cannot decode image"),
        (np.zeros((4, 4, 5), dtype=np.uint8), "channels"),
        (np.zeros((4, 4, 3), dtype=np.int64), "uint8 or float"),
        (np.full((4, 4, 3), np.nan, dtype=np.float32), "NaN"),
        (torch.zeros(2, 3, 4, 4), "CHW"),
        (12345, "unsupported image type"),
    ],
)
def test_bad_images_raise_media_error_naming_the_item(source, reason):
    with pytest.raises(MediaError) as caught:
        load_image(source)
    assert reason in str(caught.value)


def test_special_files_say_what_they_are_without_being_opened(tmp_path):
    os.mkfifo(tmp_path / "fifo.png")  # opening it would block until a writer came
    os.mkfifo(tmp_path / "fifo.mp4")
    (tmp_path / "zero.png").symlink_to("/dev/zero")  # reading it would never end
    (tmp_path / "loop.png").symlink_to(tmp_path / "loop.png")
    (tmp_path / "gone.png").symlink_to(tmp_path / "nothing.png")
    cases = [(load_image, "fifo.png", "not a regular file: FIFO"),
             (load_video_frames, "fifo.mp4", "not a regular file: FIFO"),
             (load_image, "zero.png", "not a regular file: character device (a symlink to /dev/zero)"),
             (load_image, "loop.png", "cannot access the file: Too many levels of symbolic links"),
             (load_image, "gone.png", f"file not found (a symlink to {tmp_path}/nothing.png, which does not exist)")]
    for load, name, reason in cases:
        with pytest.raises(MediaError) as caught:
            load(tmp_path / name)
        assert f"{name}: {reason}" in str(caught.value)


def test_corrupt_file_names_its_path(media_dir):
    root, _ = media_dir
    with pytest.raises(MediaError, match="corrupt.png: cannot decode image"):
        load_image(root / "corrupt.png")


def test_video_frames_use_upstream_linspace(media_dir):
    root, _ = media_dir
    assert frame_indices(10, 8) == [0, 1, 2, 3, 5, 6, 7, 9]
    assert frame_indices(10, 8) == np.linspace(0, 9, 8, dtype=int).tolist()
    frames = load_video_frames(VideoSpec(str(root / "video.mp4")))
    assert len(frames) == FRAMES_PER_VIDEO and all(f.mode == "RGB" for f in frames)
    brightness = [int(np.asarray(f).mean()) for f in frames]
    assert brightness == sorted(brightness) and brightness[0] < 10 < 150 < brightness[-1]  # frames 0 ... 9
    assert len(load_video_frames(root / "video.mp4", count=4)) == 4


@pytest.mark.parametrize("name, reason", [("missing.mp4", "file not found"), ("corrupt.mp4", "cannot decode video")])
def test_bad_videos_raise_media_error(media_dir, name, reason):
    root, _ = media_dir
    with pytest.raises(MediaError, match=reason):
        prepare_media([root / name], "video", 1)


def test_prepare_media_checks_the_count_and_kind(media_dir):
    root, _ = media_dir
    image = root / "image.png"
    with pytest.raises(MediaError, match="takes 2 image items, got 1"):
        prepare_media([image], "image", 2)
    with pytest.raises(MediaError, match="a video must be a path or VideoSpec"):
        prepare_media([Image.open(image)], "video", 1)
    loaded = prepare_media([image, str(image)], "image", 2)
    assert all(isinstance(item, Image.Image) for item in loaded)
    (spec,) = prepare_media([root / "video.mp4"], "video", 1)
    assert spec == VideoSpec(str(root / "video.mp4"))


def test_messages_follow_upstream_layout(media_dir):
    root, _ = media_dir
    image = load_image(root / "image.png")
    video = VideoSpec(str(root / "video.mp4"), fps=1.0, max_pixels=4096)
    (message,) = build_messages([image, video], "Judge this.")
    assert message["role"] == "user"
    assert [c["type"] for c in message["content"]] == ["image", "video", "text"]
    assert message["content"][1] == {"type": "video", "video": video.path, "fps": 1.0, "max_pixels": 4096}
    assert message["content"][-1] == {"type": "text", "text": "Judge this."}
    frames = build_messages([VideoSpec(video.path, as_frames=True)] * 2, "t")[0]["content"]
    assert [c["type"] for c in frames] == ["image"] * (2 * FRAMES_PER_VIDEO) + ["text"]


def test_video_spec_rejects_fps_with_nframes():
    with pytest.raises(ValueError, match="fps or nframes"):
        VideoSpec("v.mp4", fps=2.0, nframes=8)


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda root: root, "is a directory"),
        (lambda root: str(root / "a\x00b.png"), "NUL byte"),
        (lambda root: "https://example.com/a.png", "remote URLs are not fetched"),
        (lambda root: "s3://bucket/a.png", "remote URLs are not fetched"),
        (lambda root: np.zeros((2, 402, 3), dtype=np.uint8), "aspect ratio"),
        (lambda root: Image.new("RGB", (1, 201)), "aspect ratio"),
    ],
)
def test_unusable_paths_and_shapes_say_why(media_dir, make, reason):
    root, _ = media_dir
    with pytest.raises(MediaError, match=reason):
        load_image(make(root))


def test_every_decoder_failure_is_a_media_error(monkeypatch):
    from hostile_corpus import bomb_png

    with pytest.raises(MediaError, match="decompression bomb"):
        load_image(bomb_png())
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # the size between PIL's warning and its error
    with pytest.raises(MediaError, match="decompression bomb: 20x20 pixels"):
        load_image(np.zeros((20, 20, 3), dtype=np.uint8))


def test_16_bit_grayscale_is_scaled_not_clipped():
    png = io.BytesIO()
    Image.fromarray(np.full((4, 4), 32896, dtype=np.uint16)).save(png, format="PNG")  # half of 65535
    assert load_image(png.getvalue()).getpixel((0, 0)) == (128, 128, 128)


def test_short_and_empty_videos_say_why(tmp_path):
    from unifiedreward.toy.data import write_video

    write_video([Image.new("RGB", (32, 32), (9, 9, 9))], tmp_path / "one.mp4")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(MediaError, match="video has 1 frame"):
        prepare_media([tmp_path / "one.mp4"], "video", 1)
    assert prepare_media([VideoSpec(tmp_path / "one.mp4", as_frames=True)], "video", 1)  # fed as images: fine
    with pytest.raises(MediaError, match="empty file"):
        prepare_media([tmp_path / "empty.mp4"], "video", 1)
    with pytest.raises(MediaError, match="is a directory"):
        prepare_media([tmp_path], "video", 1)
