"""data_converters: LLaVA / preference / toy data -> LLaMA-Factory files (main env, no model needed)."""

from __future__ import annotations

import json
import os
import tracemalloc
from pathlib import Path

import pytest
from PIL import Image

import data_converters as dc
from data_converters.records import iter_rows
from integrations.llamafactory import register_dataset
from unifiedreward import cli
from reward_core.parsers import parse_for
from reward_core.prompts import get_template


def _png(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (200, 30, 30)).save(path)
    return path.name


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def media(tmp_path: Path) -> Path:
    root = tmp_path / "media"
    for name in ("a.png", "b.png", "frames/f0.jpg", "frames/f1.jpg", "frames/f2.jpg"):
        _png(root / name)
    (root / "clip.mp4").write_bytes(b"\x00")
    return root


def _placeholders(record: dict) -> tuple[int, int]:
    text = "".join(message["content"] for message in record["messages"])
    return text.count("<image>"), text.count("<video>")


def test_llava_items_get_one_placeholder_per_media_item(tmp_path, media):
    rows = [
        {"images": ["a.png", "b.png"], "conversations": [
            {"from": "human", "value": "<image>\n<image>\nWhich image is better?"},
            {"from": "gpt", "value": "Image 1 is better."}]},
        {"image": "a.png", "conversations": [  # no token in the source at all
            {"from": "human", "value": "Rate it."}, {"from": "gpt", "value": "Final Score: 4"}]},
        {"video": "clip.mp4", "conversations": [  # LLaVA video: a single <image> stands for the video
            {"from": "human", "value": "<image>\nRate the video."}, {"from": "gpt", "value": "Final Score: 7"}]},
        {"video": ["frames/f0.jpg", "frames/f1.jpg", "frames/f2.jpg"], "conversations": [  # frames -> images
            {"from": "human", "value": "<image>\n" * 3 + "Rate."}, {"from": "gpt", "value": "Final Score: 3"}]},
        {"images": ["a.png", "b.png"], "problem": "<image><image>Compare.",  # Think GRPO item
         "solution": "<think>x</think>\n<answer>Image 2 is better</answer>"},
        {"image": "a.png", "conversations": [  # a system turn stays first, placeholders go to the user turn
            {"from": "system", "value": "You are a judge."}, {"from": "human", "value": "Rate <image> it."},
            {"from": "gpt", "value": "Final Score: 2"}]},
    ]
    source = tmp_path / "train_data.json"
    source.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    out = tmp_path / "out" / "sft.jsonl"

    report = dc.convert_unifiedreward(source, out, media_dir=media)

    assert report.rows_written == 6 and report.rows_rejected == 0
    records = _read_jsonl(out)
    assert [_placeholders(r) for r in records] == [(2, 0), (1, 0), (0, 1), (3, 0), (2, 0), (1, 0)]
    for record in records:
        assert _placeholders(record) == (len(record["images"]), len(record["videos"]))
    assert records[0]["messages"][0] == {"role": "user", "content": "<image><image>Which image is better?"}
    assert records[0]["messages"][1] == {"role": "assistant", "content": "Image 1 is better."}
    assert records[2]["videos"] == ["clip.mp4"] and records[2]["images"] == []
    assert records[3]["images"] == ["frames/f0.jpg", "frames/f1.jpg", "frames/f2.jpg"]
    assert records[5]["messages"][:2] == [{"role": "system", "content": "You are a judge."},
                                          {"role": "user", "content": "<image>Rate it."}]


def test_media_paths_become_relative_to_media_dir_and_escapes_are_refused(tmp_path, media):
    (tmp_path / "secret.png").write_bytes(b"x")
    rows = [
        {"image": "a.png", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]},
        {"image": "../secret.png", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]},
        {"image": str(tmp_path / "secret.png"),
         "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]},
        {"image": "missing.png", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]},
    ]
    source = _jsonl(tmp_path / "rows.jsonl", rows)
    # Sources live in media/frames; LLaMA-Factory's media_dir is media/.
    with pytest.raises(dc.NoRowsConverted) as failed:  # a.png is not in media/frames; ../secret.png leaves it
        dc.convert_unifiedreward(source, tmp_path / "out.jsonl", media_dir=media, source_root=media / "frames")
    assert failed.value.report.rows_rejected == 4 and not (tmp_path / "out.jsonl").exists()
    report = dc.convert_unifiedreward(source, tmp_path / "out.jsonl", media_dir=media)
    written = _read_jsonl(tmp_path / "out.jsonl")
    assert [r["images"] for r in written] == [["a.png"]]
    messages = [str(problem) for problem in report.problems]
    assert "line 2" in messages[0] and "escapes" in messages[0]
    assert "line 3" in messages[1] and "escapes" in messages[1]
    assert "line 4" in messages[2] and "not found" in messages[2]

    resolver = dc.MediaResolver(media_dir=str(media / "frames"), source_root=str(media))
    with pytest.raises(dc.RowError, match="outside media_dir"):
        resolver.resolve("a.png")


def test_wrong_media_count_and_bad_turns_are_row_errors(tmp_path, media):
    rows = [
        {"conversations": [{"from": "gpt", "value": "starts with the assistant"}, {"from": "human", "value": "q"}]},
        {"image": "a.png", "images": ["b.png"], "conversations": [{"from": "human", "value": "q"},
                                                                    {"from": "gpt", "value": "a"}]},
        {"image": "a.png", "conversations": [{"from": "robot", "value": "q"}]},
        ["not", "an", "object"],
    ]
    with pytest.raises(dc.NoRowsConverted) as failed:
        dc.convert_unifiedreward(_jsonl(tmp_path / "rows.jsonl", rows), tmp_path / "o.jsonl", media_dir=media)
    report = failed.value.report
    assert report.rows_written == 0 and report.rows_rejected == 4 and not (tmp_path / "o.jsonl").exists()
    assert [p.location for p in report.problems] == [f"rows.jsonl:line {n}" for n in (1, 2, 3, 4)]
    assert "ambiguous media" in report.problems[1].message


def test_errors_carry_line_numbers_and_the_rest_goes_on(tmp_path, media):
    good = json.dumps({"image": "a.png", "conversations": [{"from": "human", "value": "q"},
                                                           {"from": "gpt", "value": "a"}]})
    source = tmp_path / "rows.jsonl"
    source.write_text("\n".join([good, good, "{broken json", "", good, '{"image": "a.png"}']) + "\n")
    report = dc.convert_unifiedreward(source, tmp_path / "o.jsonl", media_dir=media)
    assert (report.rows_read, report.rows_written, report.rows_rejected) == (5, 3, 2)
    assert str(report.problems[0]).startswith("rows.jsonl:line 3: invalid JSON")
    assert str(report.problems[1]).startswith("rows.jsonl:line 6:")

    # Pretty-printed JSON array: the location is the line where the bad element starts.
    items = [json.loads(good)] * 3 + [{"image": "a.png", "conversations": []}]
    array_file = tmp_path / "rows.json"
    array_file.write_text(json.dumps(items, indent=2))
    starts = [n + 1 for n, line in enumerate(array_file.read_text().splitlines()) if line == "  {"]
    report = dc.convert_unifiedreward(array_file, tmp_path / "o.jsonl", media_dir=media)
    assert report.rows_written == 3
    assert [p.location for p in report.problems] == [f"rows.json:line {starts[3]}"]


def test_strict_mode_fails_and_writes_nothing(tmp_path, media):
    rows = [{"image": "a.png", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]},
            {"image": "../x.png", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}]
    out = tmp_path / "strict.jsonl"
    with pytest.raises(dc.ConversionFailed, match="line 2"):
        dc.convert_unifiedreward(_jsonl(tmp_path / "rows.jsonl", rows), out, media_dir=media, strict=True)
    assert not out.exists()
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".strict")]


def test_atomic_write_leaves_no_partial_file_after_a_failure(tmp_path):
    source = _jsonl(tmp_path / "rows.jsonl", [{"n": n} for n in range(100)])
    out = tmp_path / "out.jsonl"
    out.write_text("previous complete output\n")

    def explode_at_50(row):
        if row["n"] == 50:
            raise OSError("disk full (injected)")
        return row

    with pytest.raises(OSError, match="injected"):
        dc.convert_file(source, out, explode_at_50)
    assert out.read_text() == "previous complete output\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl", "rows.jsonl"]  # no temp file left

    report = dc.convert_file(source, out, lambda row: row)
    assert report.rows_written == 100 and len(_read_jsonl(out)) == 100


def test_json_array_streams_thousands_of_rows_in_constant_memory(tmp_path):
    source = tmp_path / "big.json"
    padding = "x" * 2000
    with source.open("w") as handle:  # ~10 MB, written incrementally
        handle.write("[\n")
        for n in range(5000):
            handle.write(("," if n else "") + json.dumps({"n": n, "pad": padding, "values": [1.5, -2e3, n]}) + "\n")
        handle.write("]\n")
    assert source.stat().st_size > 10_000_000

    tracemalloc.start()
    count = total = 0
    for row in iter_rows(source):
        assert row.error is None
        count += 1
        total += row.data["n"]
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == 5000 and total == sum(range(5000))
    assert peak < 2_000_000, f"peak {peak} bytes: the array was not streamed"

    # Elements cut by a read-chunk boundary are decoded whole (numbers are the tricky case).
    scalars = tmp_path / "scalars.json"
    scalars.write_text(json.dumps([1.2345678] * 30000))
    errors = {row.error for row in iter_rows(scalars)}
    assert errors == {"expected a JSON object, got float"}


def test_json_array_element_in_latin1_fails_alone(tmp_path):
    rows = [{"prompt": f"caption {n}", "chosen": "a", "rejected": "b"} for n in range(4)]
    elements = [json.dumps(row).encode() for row in rows]
    elements[1] = json.dumps({**rows[1], "prompt": "un café"}, ensure_ascii=False).encode("latin-1")
    source = tmp_path / "prefs.json"
    source.write_bytes(b"[\n" + b",\n".join(elements) + b"\n]\n")
    read = list(iter_rows(source))
    assert [row.error for row in read] == [None, "not UTF-8: byte 0xe9", None, None]
    assert read[1].location == "prefs.json:line 3"
    assert [row.data["prompt"] for row in read if row.data] == ["caption 0", "caption 2", "caption 3"]


def test_parquet_rows_and_embedded_image_bytes(tmp_path):
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (0, 0, 255)).save(buffer, format="PNG")
    table = pa.table({
        "image": [{"bytes": buffer.getvalue(), "path": "x.png"}, {"bytes": None, "path": "../../etc/passwd"}],
        "conversations": [[{"from": "human", "value": "<image>\nRate."}, {"from": "gpt", "value": "Final Score: 5"}]] * 2,
    })
    pq.write_table(table, tmp_path / "train.parquet")
    media_dir = tmp_path / "media"
    report = dc.convert_unifiedreward(tmp_path / "train.parquet", tmp_path / "out.jsonl", media_dir=media_dir)
    assert report.rows_written == 1
    assert report.problems[0].location == "train.parquet:row 1"
    record = _read_jsonl(tmp_path / "out.jsonl")[0]
    assert record["images"][0].startswith("extracted/") and (media_dir / record["images"][0]).is_file()
    assert record["messages"][0]["content"] == "<image>Rate."


def test_preference_and_sift_rows_become_ranking_records(tmp_path, media):
    rows = [
        {"prompt": "What colour is it?", "image": "a.png", "chosen": "Red.", "rejected": "Blue."},
        {"id": "s1", "question": "<image>\nDescribe.", "images": ["a.png", "b.png"], "chosen": "Two red squares.",
         "rejected": "A cat.", "chosen_score": 4.5, "rejected_score": 1.0},
        {"id": "s2", "question": "Q", "image": "a.png", "chosen": "x", "rejected": "y", "chosen_score": 1,
         "rejected_score": 3},
        {"prompt": "Q", "chosen": "same", "rejected": "same"},
        {"prompt": "Q", "chosen": "a", "rejected": "b", "chosen_score": "high", "rejected_score": 1},
    ]
    report = dc.convert_preference(_jsonl(tmp_path / "sift.jsonl", rows), tmp_path / "dpo.jsonl", media_dir=media)
    assert (report.rows_written, report.rows_rejected) == (2, 3)
    first, second = _read_jsonl(tmp_path / "dpo.jsonl")
    assert first == {
        "messages": [{"role": "user", "content": "<image>What colour is it?"}],
        "chosen": {"role": "assistant", "content": "Red."},
        "rejected": {"role": "assistant", "content": "Blue."},
        "images": ["a.png"], "videos": [],
    }
    assert second["messages"][0]["content"] == "<image><image>Describe."
    assert "below rejected_score" in report.problems[0].message
    assert "identical" in report.problems[1].message


def test_dataset_info_merge_keeps_other_entries(tmp_path):
    info = tmp_path / "dataset_info.json"
    info.write_text(json.dumps({"mllm_demo": {"file_name": "mllm_demo.json", "formatting": "sharegpt"}}))
    (tmp_path / "sft.jsonl").write_text("")
    entry = register_dataset(tmp_path, "unifiedreward_sft", tmp_path / "sft.jsonl")
    register_dataset(info, "unifiedreward_dpo", tmp_path / "dpo.jsonl", ranking=True)
    merged = json.loads(info.read_text())
    assert merged["mllm_demo"] == {"file_name": "mllm_demo.json", "formatting": "sharegpt"}
    assert merged["unifiedreward_sft"] == entry and entry["file_name"] == "sft.jsonl"
    assert merged["unifiedreward_dpo"]["ranking"] is True
    assert merged["unifiedreward_dpo"]["columns"]["chosen"] == "chosen"
    register_dataset(info, "unifiedreward_sft", tmp_path / "sft.jsonl")  # identical: no-op
    with pytest.raises(ValueError, match="already exists"):
        register_dataset(info, "unifiedreward_sft", tmp_path / "other.jsonl")
    register_dataset(info, "unifiedreward_sft", tmp_path / "other.jsonl", overwrite=True)
    assert json.loads(info.read_text())["unifiedreward_sft"]["file_name"] == "other.jsonl"


def test_toy_judge_rows_use_registry_prompts_and_parseable_targets(tmp_path):
    data = tmp_path / "data"
    images = [_png(data / "p_1.png"), _png(data / "p_2.png")]
    rows = [
        {"id": "p", "prompt": "a red circle on the left", "images": images, "winner": 2, "split": "train"},
        {"id": "q", "prompt": "a red circle on the left", "image": images[0], "score": 4, "split": "train"},
        {"id": "t", "prompt": "x", "image": images[0], "score": 4, "split": "test"},
        {"id": "r", "prompt": "x", "image": images[0], "score": 9, "split": "train"},
        {"id": "s", "prompt": "x", "images": images[:1], "winner": 1, "split": "train"},
        {"id": "u", "image": images[0], "question": "What colour?", "answer1": "Red.", "answer2": "Blue.",
         "winner": 1, "split": "train"},
    ]
    report = dc.convert_toy_judge(_jsonl(data / "toy.jsonl", rows), data / "sft.jsonl", media_dir=data)
    assert (report.rows_written, report.rows_filtered, report.rows_rejected) == (3, 1, 2)
    assert "outside the template's scale" in report.problems[0].message
    assert "takes 2 media" in report.problems[1].message
    pair, point, answer = _read_jsonl(data / "sft.jsonl")

    pair_template = get_template("image_generation.pair_rank.v1")
    assert pair["messages"][0]["content"] == "<image><image>" + pair_template.render(prompt="a red circle on the left")
    assert pair["messages"][1]["content"] == "Image 2 is better."
    assert parse_for(pair_template, pair["messages"][1]["content"]).winner == 2
    point_template = get_template("image_generation.point_score.v1")
    assert point["messages"][1]["content"] == "Final Score: 4"
    assert parse_for(point_template, point["messages"][1]["content"]).score == 4
    answer_template = get_template("image_understanding.pair_rank.v1")
    assert answer["messages"][0]["content"].startswith("<image>")
    assert parse_for(answer_template, answer["messages"][1]["content"]).winner == 1


def test_cli_convert_registers_the_dataset(tmp_path, media, capsys):
    rows = [{"prompt": "Q", "image": "a.png", "chosen": "a", "rejected": "b"}, {"prompt": "Q"}]
    source = _jsonl(tmp_path / "pairs.jsonl", rows)
    output = media / "pairs_lf.jsonl"
    status = cli.main(["convert", "preference", str(source), str(output), "--dataset-info", str(media),
                       "--dataset-name", "toy_dpo"])
    captured = capsys.readouterr()
    assert status == 1  # one row was rejected; the good one is still written
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["rows_written"] == 1 and summary["rows_rejected"] == 1
    assert "pairs.jsonl:line 2" in captured.err
    assert json.loads((media / "dataset_info.json").read_text())["toy_dpo"]["ranking"] is True

    status = cli.main(["convert", "preference", str(source), str(tmp_path / "s.jsonl"), "--media-dir", str(media),
                       "--strict"])
    assert status == 1 and not (tmp_path / "s.jsonl").exists()


def test_run_sift_records_become_ranking_records(tmp_path, media):
    from unifiedreward.sift import PairOutcome, SiftRecord, SiftWriter

    def record(item_id, status, candidates, chosen=None, rejected=None):
        kept = status == "kept"
        return SiftRecord(
            id=item_id, order=0, status=status, reason=None if kept else "tie", chosen_index=chosen,
            rejected_index=rejected, chosen_score=4.0 if kept else None, rejected_score=2.0 if kept else None,
            candidates=candidates, scores=[4.0, 2.0, 3.0], pairs=[PairOutcome(0, 1, 0, "decisive")],
            fields={"question": "What colour is it?"}, meta={"images": ["a.png"]},
        )

    with SiftWriter(tmp_path / "sift.jsonl") as writer:
        writer.append(record("kept", "kept", ["Red.", "Blue.", "Green."], chosen=0, rejected=1))
        writer.append(record("dropped", "dropped", ["Red.", "Red!", "Red?"]))
        writer.append(record("media", "kept", ["x.png", None, "y.png"], chosen=0, rejected=1))
    report = dc.convert_preference(tmp_path / "sift.jsonl", tmp_path / "dpo.jsonl", media_dir=media)
    assert (report.rows_written, report.rows_filtered, report.rows_rejected) == (1, 1, 1)
    assert "not texts" in report.problems[0].message
    (row,) = _read_jsonl(tmp_path / "dpo.jsonl")
    assert row["messages"] == [{"role": "user", "content": "<image>What colour is it?"}]
    assert (row["chosen"]["content"], row["rejected"]["content"], row["images"]) == ("Red.", "Blue.", ["a.png"])
