"""Benchmark loaders on tiny fixtures written in each benchmark's exact schema."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest
from PIL import Image

from unifiedreward.bench import load_benchmark
from unifiedreward.bench.loaders import vl_rewardbench_category


def _png(color: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buffer, format="PNG")
    return buffer.getvalue()


GENAI_IMAGE_ROWS = [
    ("a red cube", "red", "blue", "leftvote"),
    ("a blue ball", "red", "blue", "rightvote"),
    ("a green tree", "green", "green", "tievote"),
    ("a black cat", "black", "white", "bothbad_vote"),
    ("a white dog", "white", "black", "abstain"),  # not a GenAI-Bench vote: reported, not judged
]


def write_genai_bench_image_parquet(path):
    """TIGER-Lab/GenAI-Bench image_generation: images embedded as HF Image structs {bytes, path}."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    columns = {"prompt": [], "left_model": [], "left_image": [], "right_model": [], "right_image": [], "vote_type": []}
    for index, (prompt, left, right, vote) in enumerate(GENAI_IMAGE_ROWS):
        columns["prompt"].append(prompt)
        columns["left_model"].append("model-a")
        columns["left_image"].append({"bytes": _png(left), "path": f"{index}_left.png"})
        columns["right_model"].append("model-b")
        columns["right_image"].append({"bytes": _png(right), "path": f"{index}_right.png"})
        columns["vote_type"].append(vote)
    schema = pa.schema([(name, image if name.endswith("_image") else pa.string()) for name in columns])
    pq.write_table(pa.table(columns, schema=schema), path)


def test_genai_bench_image_parquet(tmp_path):
    path = tmp_path / "genai_image.parquet"
    write_genai_bench_image_parquet(path)
    loaded = load_benchmark("genai-bench-image", path)
    assert [item.human for item in loaded.items] == [1, -1, 0, 0]
    assert [item.raw_label for item in loaded.items] == ["leftvote", "rightvote", "tievote", "bothbad_vote"]
    first = loaded.items[0]
    assert first.fields == {"prompt": "a red cube"}
    assert Image.open(io.BytesIO(first.candidates[0])).getpixel((0, 0)) == (255, 0, 0)
    assert Image.open(io.BytesIO(first.candidates[1])).getpixel((0, 0)) == (0, 0, 255)
    assert len(loaded.invalid) == 1 and loaded.invalid[0].index == 4 and "abstain" in loaded.invalid[0].error
    assert loaded.spec.template == "image_generation.pair_rank.v1"


def test_genai_bench_video_urls_resolve_to_media_root(tmp_path):
    rows = [
        {"prompt": "waves", "left_video": "https://host/videos/a.mp4", "right_video": "https://host/videos/b.mp4",
         "vote_type": "rightvote"},
    ]
    path = tmp_path / "genai_video.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n{not json\n")
    loaded = load_benchmark("genai-bench-video", path, media_root=tmp_path / "videos")
    (item,) = loaded.items
    assert item.candidates == (str(tmp_path / "videos" / "a.mp4"), str(tmp_path / "videos" / "b.mp4"))
    assert item.human == -1
    assert loaded.invalid[0].index == 1 and "invalid JSON" in loaded.invalid[0].error


def test_videogen_rewardbench_csv(tmp_path):
    header = ["path_A", "path_B", "A_model", "B_model", "prompt", "fps_A", "num_frames_A", "fps_B", "num_frames_B",
              "VQ", "MQ", "TA", "Overall"]
    rows = [
        ["./videos/1a.mp4", "./videos/1b.mp4", "m1", "m2", "a dog runs", 8, 40, 8, 40, "A", "B", "A", "A"],
        ["./videos/2a.mp4", "./videos/2b.mp4", "m1", "m3", "a cat sits", 8, 40, 8, 40, "B", "B", "same", "B"],
        ["./videos/3a.mp4", "./videos/3b.mp4", "m2", "m3", "rain", 8, 40, 8, 40, "same", "same", "same", " same"],
    ]
    path = tmp_path / "videogen-rewardbench.csv"
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows([header, *rows])
    loaded = load_benchmark("videogen-rewardbench", path)
    assert [item.human for item in loaded.items] == [1, -1, 0]  # the Overall column, stripped
    assert loaded.items[0].candidates[0] == str(tmp_path / "videos" / "1a.mp4")
    assert loaded.items[1].fields == {"prompt": "a cat sits"}
    assert not loaded.invalid


VL_ROWS = [
    {"id": "RLAIF-V-1", "human_ranking": [0, 1]},
    {"id": "RLHF_22", "human_ranking": [1, 0]},
    {"id": "hallucination_pair-3", "human_ranking": [0, 1]},
    {"id": "mathverse_4", "human_ranking": [1, 0]},
    {"id": "mmmu-pro-5", "human_ranking": [0, 1]},
    {"id": "wildvision-battle-6", "human_ranking": [0, 1]},
    {"id": "vlfeedback_7", "human_ranking": [1, 0]},
]


def write_vl_rewardbench_json(path, image_name="img.png"):
    """UnifiedReward's VL-RewardBench data.json layout: the HF text fields plus an image path."""
    rows = [
        {**row, "query": f"question {i}?", "response": [f"first {i}", f"second {i}"], "image": image_name,
         "models": ["m1", "m2"], "judge": "human", "rationale": "", "query_source": None}
        for i, row in enumerate(VL_ROWS)
    ]
    path.write_text(json.dumps(rows))


def test_vl_rewardbench_json(tmp_path):
    path = tmp_path / "data.json"
    write_vl_rewardbench_json(path)
    loaded = load_benchmark("vl-rewardbench", path)
    assert [item.human for item in loaded.items] == [1, -1, 1, -1, 1, 1, -1]
    assert [item.category for item in loaded.items] == [
        "hallucination", "hallucination", "hallucination", "reasoning", "reasoning", "general", "general"]
    item = loaded.items[1]
    assert item.candidates == ("first 1", "second 1")
    assert item.fields == {"question": "question 1?"}
    assert item.context_media == (str(tmp_path / "img.png"),)


def test_vl_rewardbench_category_prefers_explicit_source():
    assert vl_rewardbench_category({"id": "x_1", "query_source": "POVID"}) == "hallucination"
    assert vl_rewardbench_category({"id": "x_1", "image": "images/mmmu/1.jpg"}) == "reasoning"
    assert vl_rewardbench_category({"id": "unknown_1"}) == "general"  # VLFeedback, as upstream


def test_wrong_schema_is_a_clear_error(tmp_path):
    path = tmp_path / "data.json"
    write_vl_rewardbench_json(path)
    with pytest.raises(ValueError, match=r"genai-bench-image schema.*missing column"):
        load_benchmark("genai-bench-image", path)
    with pytest.raises(ValueError, match="unknown benchmark"):
        load_benchmark("mj-bench", path)


def test_saved_hf_dataset_with_image_feature(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = {
        "id": ["RLHF_1", "mmmu_2"],
        "query": ["q1", "q2"],
        "response": [["a", "b"], ["c", "d"]],
        "image": [Image.new("RGB", (8, 8), "red"), Image.new("RGB", (8, 8), "blue")],
        "human_ranking": [[1, 0], [0, 1]],
    }
    features = datasets.Features({
        "id": datasets.Value("string"),
        "query": datasets.Value("string"),
        "response": datasets.Sequence(datasets.Value("string")),
        "image": datasets.Image(),
        "human_ranking": datasets.Sequence(datasets.Value("int32")),
    })
    datasets.DatasetDict({"test": datasets.Dataset.from_dict(rows, features=features)}).save_to_disk(tmp_path / "vlrb")
    loaded = load_benchmark("vl-rewardbench", tmp_path / "vlrb", split="test")
    assert [item.human for item in loaded.items] == [-1, 1]
    assert [item.category for item in loaded.items] == ["hallucination", "reasoning"]
    image = loaded.items[1].context_media[0]
    assert isinstance(image, bytes)  # kept encoded until judged
    assert Image.open(io.BytesIO(image)).getpixel((0, 0)) == (0, 0, 255)


def test_bench_does_not_import_datasets_or_pyarrow():
    code = "import sys, unifiedreward.bench, unifiedreward.cli.bench; print('datasets' in sys.modules, 'pyarrow' in sys.modules)"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.split() == ["False", "False"]
