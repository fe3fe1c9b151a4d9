"""Benchmark loaders: each dataset's exact schema -> :class:`PairItem` (A/B orientation, ties kept).

Supported (see docs/bench.md for sources and metric definitions):

* ``genai-bench-image`` / ``genai-bench-video`` — TIGER-Lab/GenAI-Bench (from GenAI-Arena votes), not the
  CMU compositional GenAI-Bench of t2v_metrics. Columns ``prompt, left_image|left_video,
  right_image|right_video, vote_type``; ``leftvote`` -> A, ``rightvote`` -> B, ``tievote`` and
  ``bothbad_vote`` -> tie.
* ``videogen-rewardbench`` — KwaiVGI (KlingTeam)/VideoGen-RewardBench. Columns ``path_A, path_B, prompt,
  ... , Overall`` with labels ``A`` / ``B`` / ``same``.
* ``vl-rewardbench`` — MMInstruction/VL-RewardBench. Columns ``id, query, response`` (two answers),
  ``image``, ``human_ranking`` (``[0, 1]`` = first answer preferred); category from the sample source.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from .items import A_BETTER, B_BETTER, TIE, CandidateKind, InvalidRecord, PairItem
from .records import iter_records

TAU_DIFF = ("tau", "diff")
OVERALL_MACRO = ("overall", "macro")
VL_REWARDBENCH_CATEGORIES = ("general", "hallucination", "reasoning")


class RecordError(ValueError):
    """A row that does not follow the benchmark's schema."""


@dataclass(frozen=True)
class BenchmarkSpec:
    """What a benchmark is: its schema parser, default judge template and headline metrics."""

    name: str
    template: str  # default UnifiedReward template key
    media: str  # template media the benchmark needs: images2 | videos2 | image
    candidate_kind: CandidateKind
    metrics: tuple[str, ...]
    hf_repo: str
    hf_subset: str | None
    hf_split: str | None
    parse_record: Callable[[dict[str, Any], int, "MediaResolver"], PairItem] = field(repr=False)


@dataclass(frozen=True)
class LoadedBenchmark:
    spec: BenchmarkSpec
    items: list[PairItem]
    invalid: list[InvalidRecord]


class MediaResolver:
    """Turns a media cell into something the judge can read: a local path, bytes, or an image object.

    Relative paths are joined to ``media_root``; with a ``media_root``, URLs (GenAI-Bench video rows)
    resolve to ``media_root/<file name>`` so pre-downloaded files are used.
    """

    def __init__(self, media_root: str | Path | None) -> None:
        self.media_root = Path(media_root) if media_root is not None else None

    def __call__(self, value: Any, column: str) -> Any:
        if value is None:
            raise RecordError(f"column {column!r} is empty")
        if isinstance(value, dict):  # HF Image feature stored undecoded: {"bytes": ..., "path": ...}
            if value.get("bytes"):
                return bytes(value["bytes"])
            value = value.get("path")
            if not value:
                raise RecordError(f"column {column!r} holds neither bytes nor a path")
        if isinstance(value, (bytes, bytearray)):
            return bytes(value)
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if not isinstance(value, str):
            return value  # already decoded (PIL image, array): the judge takes it as is
        if not value.strip():
            raise RecordError(f"column {column!r} is empty")
        if urlparse(value).scheme in ("http", "https"):
            if self.media_root is None:
                return value
            return str(self.media_root / Path(urlparse(value).path).name)
        path = Path(value)
        if self.media_root is not None and not path.is_absolute():
            path = self.media_root / path
        return str(path)


def _require(record: dict[str, Any], *columns: str) -> None:
    missing = [column for column in columns if column not in record]
    if missing:
        raise RecordError(f"missing column(s) {missing} (has {sorted(record)})")


def _row_id(record: dict[str, Any], index: int, prefix: str) -> str:
    for key in ("id", "question_id", "uid"):
        if record.get(key) not in (None, ""):
            return str(record[key])
    return f"{prefix}-{index}"


def _genai_bench_label(vote_type: Any) -> int:
    vote = str(vote_type).strip().lower()
    if vote in ("leftvote", "left_vote"):
        return A_BETTER
    if vote in ("rightvote", "right_vote"):
        return B_BETTER
    if vote in ("tievote", "tie_vote", "bothbad_vote", "bothbadvote"):
        return TIE
    raise RecordError(f"unknown vote_type {vote_type!r} (expected leftvote, rightvote, tievote, bothbad_vote)")


def _genai_bench_parser(kind: str) -> Callable[[dict[str, Any], int, MediaResolver], PairItem]:
    left, right = f"left_{kind}", f"right_{kind}"

    def parse(record: dict[str, Any], index: int, resolve: MediaResolver) -> PairItem:
        _require(record, "prompt", left, right, "vote_type")
        return PairItem(
            id=_row_id(record, index, f"genai-bench-{kind}"),
            human=_genai_bench_label(record["vote_type"]),
            candidates=(resolve(record[left], left), resolve(record[right], right)),
            fields={"prompt": str(record["prompt"])},
            raw_label=str(record["vote_type"]),
        )

    return parse


def _videogen_rewardbench_parser(label_column: str = "Overall"):
    labels = {"A": A_BETTER, "B": B_BETTER, "same": TIE}

    def parse(record: dict[str, Any], index: int, resolve: MediaResolver) -> PairItem:
        _require(record, "path_A", "path_B", "prompt", label_column)
        raw = str(record[label_column]).strip()
        if raw not in labels:
            raise RecordError(f"unknown {label_column} label {record[label_column]!r} (expected A, B or same)")
        return PairItem(
            id=_row_id(record, index, "videogen-rewardbench"),
            human=labels[raw],
            candidates=(resolve(record["path_A"], "path_A"), resolve(record["path_B"], "path_B")),
            fields={"prompt": str(record["prompt"])},
            raw_label=raw,
        )

    return parse


# VL-RewardBench source datasets -> the three reported categories (the benchmark's own grouping).
_VL_SOURCES = {
    "vlfeedback": "general",
    "wildvision": "general",
    "povid": "hallucination",
    "rlaif": "hallucination",
    "rlhf": "hallucination",
    "hallucination": "hallucination",
    "mathverse": "reasoning",
    "mmmu": "reasoning",
    "reasoning": "reasoning",
}


def vl_rewardbench_category(record: dict[str, Any]) -> str:
    """The sample's category: from ``query_source`` or the image folder when present, else the id prefix.

    The id rule is UnifiedReward's evaluation script (``RLAIF``/``RLHF``/``hallucination`` ->
    hallucination, ``mathverse``/``mmmu`` -> reasoning, ``wildvision`` and everything else, i.e.
    VLFeedback, -> general).
    """
    hints = [record.get("query_source")]
    image = record.get("image_path") or record.get("image")
    if isinstance(image, str):
        hints.extend(Path(image).parts[:-1])
    for hint in hints:
        if isinstance(hint, str):
            source = hint.strip().lower()
            for name, category in _VL_SOURCES.items():
                if source.startswith(name):
                    return category
    sample_id = str(record.get("id", ""))
    cut = min((i for i in (sample_id.find("_"), sample_id.find("-")) if i >= 0), default=len(sample_id))
    prefix = sample_id[:cut].lower()
    return _VL_SOURCES.get(prefix, "general")


def _vl_rewardbench_record(record: dict[str, Any], index: int, resolve: MediaResolver) -> PairItem:
    _require(record, "query", "response", "image", "human_ranking")
    responses, ranking = record["response"], record["human_ranking"]
    if not isinstance(responses, (list, tuple)) or len(responses) != 2:
        raise RecordError(f"'response' must hold exactly 2 answers, got {responses!r:.80}")
    if not isinstance(ranking, (list, tuple)) or len(ranking) != 2:
        raise RecordError(f"'human_ranking' must hold 2 ranks, got {ranking!r}")
    first, second = (int(rank) for rank in ranking)  # rank 0 = preferred
    human = A_BETTER if first < second else B_BETTER if first > second else TIE
    return PairItem(
        id=_row_id(record, index, "vl-rewardbench"),
        human=human,
        candidates=(str(responses[0]), str(responses[1])),
        fields={"question": str(record["query"])},
        context_media=(resolve(record["image"], "image"),),
        category=vl_rewardbench_category(record),
        raw_label=str(list(ranking)),
    )


BENCHMARKS: dict[str, BenchmarkSpec] = {
    spec.name: spec
    for spec in (
        BenchmarkSpec(
            name="genai-bench-image",
            template="image_generation.pair_rank.v1",
            media="images2",
            candidate_kind="media",
            metrics=TAU_DIFF,
            hf_repo="TIGER-Lab/GenAI-Bench",
            hf_subset="image_generation",
            hf_split="test",
            parse_record=_genai_bench_parser("image"),
        ),
        BenchmarkSpec(
            name="genai-bench-video",
            template="video_generation.pair_rank.v1",
            media="videos2",
            candidate_kind="media",
            metrics=TAU_DIFF,
            hf_repo="TIGER-Lab/GenAI-Bench",
            hf_subset="video_generation",
            hf_split="test",
            parse_record=_genai_bench_parser("video"),
        ),
        BenchmarkSpec(
            name="videogen-rewardbench",
            template="video_generation.pair_rank.v1",
            media="videos2",
            candidate_kind="media",
            metrics=TAU_DIFF,
            hf_repo="KlingTeam/VideoGen-RewardBench",
            hf_subset=None,
            hf_split="eval",
            parse_record=_videogen_rewardbench_parser(),
        ),
        BenchmarkSpec(
            name="vl-rewardbench",
            template="image_understanding.pair_rank.v1",
            media="image",
            candidate_kind="answers",
            metrics=OVERALL_MACRO,
            hf_repo="MMInstruction/VL-RewardBench",
            hf_subset=None,
            hf_split="test",
            parse_record=_vl_rewardbench_record,
        ),
    )
}


def get_benchmark(name: str) -> BenchmarkSpec:
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise ValueError(f"unknown benchmark {name!r}; choose from {sorted(BENCHMARKS)}") from None


def parse_records(
    spec: BenchmarkSpec, records: Iterable[dict[str, Any]], media_root: str | Path | None = None, limit: int | None = None
) -> LoadedBenchmark:
    """Parse rows; a bad row becomes an :class:`InvalidRecord` and the rest go on."""
    resolve = MediaResolver(media_root)
    items: list[PairItem] = []
    invalid: list[InvalidRecord] = []
    for index, record in _limited(records, limit):
        record_id = str(record["id"]) if isinstance(record, dict) and "id" in record else None
        try:
            if not isinstance(record, dict):
                raise RecordError(f"row is a {type(record).__name__}, not an object")
            if "__error__" in record:
                raise RecordError(record["__error__"])
            items.append(spec.parse_record(record, index, resolve))
        except (RecordError, ValueError, TypeError) as exc:
            invalid.append(InvalidRecord(index=index, id=record_id, error=str(exc)))
    if invalid and not items:
        raise ValueError(f"no row of the data follows the {spec.name} schema; first error: {invalid[0].error}")
    _check_unique_ids(items)
    return LoadedBenchmark(spec=spec, items=items, invalid=invalid)


def _limited(records: Iterable[dict[str, Any]], limit: int | None) -> Iterator[tuple[int, dict[str, Any]]]:
    for index, record in enumerate(records):
        if limit is not None and index >= limit:
            return
        yield index, record


def _check_unique_ids(items: list[PairItem]) -> None:
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise ValueError(f"duplicate item id {item.id!r}: ids must be unique for seeded ordering and reports")
        seen.add(item.id)


def load_benchmark(
    name: str,
    source: str | Path | None = None,
    *,
    media_root: str | Path | None = None,
    subset: str | None = None,
    split: str | None = None,
    limit: int | None = None,
) -> LoadedBenchmark:
    """Load a benchmark from ``source`` (file, saved dataset dir, ``hf:<repo>``) or, by default, its Hub copy.

    Relative media paths resolve against ``media_root``, defaulting to the data file's folder.
    """
    spec = get_benchmark(name)
    if source is None:
        source = f"hf:{spec.hf_repo}"
        subset = subset or spec.hf_subset
        split = split or spec.hf_split
    elif str(source).startswith("hf:") and str(source)[3:] == spec.hf_repo:
        subset = subset or spec.hf_subset
        split = split or spec.hf_split
    if media_root is None and not str(source).startswith("hf:"):
        path = Path(source)
        media_root = path if path.is_dir() else path.parent
    return parse_records(spec, iter_records(source, subset=subset, split=split), media_root=media_root, limit=limit)

