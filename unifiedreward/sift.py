"""Pair-rank + point-sift preference construction (UnifiedReward paper, section "DPO data").

Per prompt: N candidates are split into disjoint pairs, each pair is ranked by the reward model, all
candidates are point-scored, and the pair (best-scored winner, worst-scored loser) is kept only when the
winner's score is strictly higher. Candidates are texts (understanding: answers to a question about shared
media) or media (generation: images / videos for a caption); the templates decide which.

Fixes over upstream ``infer+sift.py`` / ``sift_dpo_data.py``: scores compared as numbers, a tied or failed
pair is dropped from the winners/losers instead of "candidate 1 wins", and resume is by item id. Results
are appended one fsync'd JSONL line per item, so a run killed at any point (even ``kill -9``) resumes
without duplicates or losses.

Shared by the TRL and diffusers integrations; no trainer imports here.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from reward_core.atomic_files import atomic_open, atomic_write_text
from reward_core.prompts import Template, get_template
from reward_core.results import RewardResult
from reward_core.text_lines import iter_lines

logger = logging.getLogger(__name__)

RESULTS_GLOB = "sift*.jsonl"


# --------------------------------------------------------------------------- items and records


@dataclass
class SiftItem:
    """One prompt to sift.

    ``fields`` fills the template placeholders shared by every call (``{"question": ...}`` for
    understanding, ``{"prompt": caption}`` for generation). ``media`` is the shared media of an
    understanding prompt. ``candidates`` may be left empty when a candidate source generates them.
    ``meta`` is carried unchanged into the record (e.g. image paths for the exported dataset).
    """

    id: str
    fields: dict[str, str]
    candidates: list[Any] = field(default_factory=list)
    media: list[Any] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    order: int = 0  # position in the input; fixes the merge order of shards


@dataclass
class PairOutcome:
    """The ranking of candidates ``a`` and ``b``: ``winner`` is a candidate index, or None (tie / failed)."""

    a: int
    b: int
    winner: int | None
    status: str  # "decisive" | "tie" | "inconsistent" | "failed"
    error: str | None = None
    text: str | None = None  # the judge's raw answer (both orders with swap)


@dataclass
class SiftRecord:
    """What the sift decided for one item; one JSONL line."""

    id: str
    order: int
    status: str  # "kept" | "dropped" | "failed"
    reason: str | None
    chosen_index: int | None
    rejected_index: int | None
    chosen_score: float | None
    rejected_score: float | None
    candidates: list[Any]  # JSON-safe refs (texts / paths); None where a candidate is not serialisable
    scores: list[float | None]
    pairs: list[PairOutcome]
    fields: dict[str, str]
    meta: dict[str, Any]
    point_texts: list[str | None] = field(default_factory=list)  # the judge's raw answer per point score

    @property
    def chosen(self) -> Any:
        return None if self.chosen_index is None else self.candidates[self.chosen_index]

    @property
    def rejected(self) -> Any:
        return None if self.rejected_index is None else self.candidates[self.rejected_index]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SiftRecord:
        data = dict(data)
        data["pairs"] = [PairOutcome(**p) for p in data["pairs"]]
        return cls(**data)


@dataclass
class SiftSettings:
    """Which templates rank and score, and how the reward model is asked."""

    pair_template: str = "image_understanding.pair_rank.v1"
    point_template: str = "image_understanding.point_score.v1"
    mode: str = "generate"  # or "logit" where the template supports it
    swap: bool = False  # rank each pair in both orders; disagreeing orders count as a tie (dropped)


# --------------------------------------------------------------------------- the algorithm


def disjoint_pairs(count: int) -> list[tuple[int, int]]:
    """(0, 1), (2, 3), ...; an odd last candidate is point-scored but never ranked."""
    return [(i, i + 1) for i in range(0, count - 1, 2)]


def _text_candidates(template: Template, slot: str) -> bool:
    return slot in template.fields


def candidates_are_text(settings: SiftSettings) -> bool:
    """Whether the templates take candidates as text (answers: ``answer1``/``response`` fields) or as media.

    The templates decide, never the candidate values; a pair and a point template that disagree are an error.
    """
    pair_t, point_t = get_template(settings.pair_template), get_template(settings.point_template)
    pair_text, point_text = _text_candidates(pair_t, "answer1"), _text_candidates(point_t, "response")
    if pair_text != point_text:
        kinds = {True: "text answers", False: "media"}
        raise ValueError(
            f"{pair_t.key} ranks {kinds[pair_text]} but {point_t.key} scores {kinds[point_text]}: "
            "pick templates that judge the same kind of candidate"
        )
    return pair_text


def _template_fields(template: Template, values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k in template.fields}


def pair_items(template: Template, item: SiftItem, pairs: Sequence[tuple[int, int]]) -> list[Any]:
    """Judge requests ranking each pair ``(a, b)`` with ``a`` shown first."""
    from reward_core.model import JudgeItem

    requests = []
    for a, b in pairs:
        first, second = item.candidates[a], item.candidates[b]
        if _text_candidates(template, "answer1"):
            values = {**item.fields, "answer1": first, "answer2": second}
            requests.append(JudgeItem(media=list(item.media), fields=_template_fields(template, values)))
        else:
            requests.append(JudgeItem(media=[first, second], fields=_template_fields(template, item.fields)))
    return requests


def point_items(template: Template, item: SiftItem) -> list[Any]:
    """Judge requests scoring every candidate."""
    from reward_core.model import JudgeItem

    requests = []
    for candidate in item.candidates:
        if _text_candidates(template, "response"):
            values = {**item.fields, "response": candidate}
            requests.append(JudgeItem(media=list(item.media), fields=_template_fields(template, values)))
        else:
            requests.append(JudgeItem(media=[candidate], fields=_template_fields(template, item.fields)))
    return requests


def rank_pair(a: int, b: int, verdict: RewardResult) -> PairOutcome:
    """Decide one pair from the verdict on (a, b); a tie (or, in swap mode, disagreeing orders) decides nothing."""
    if not verdict.ok or verdict.winner not in (0, 1, 2):
        return PairOutcome(a, b, None, "failed", verdict.error or f"no winner in {verdict.text!r}", verdict.text)
    if verdict.winner == 0:
        return PairOutcome(a, b, None, "inconsistent" if verdict.consistency == 0.0 else "tie", text=verdict.text)
    return PairOutcome(a, b, a if verdict.winner == 1 else b, "decisive", text=verdict.text)


def choose(pairs: Sequence[PairOutcome], scores: Sequence[float | None]) -> tuple[int | None, int | None, str | None]:
    """Best-scored winner vs worst-scored loser; returns (chosen, rejected, reason_if_dropped)."""
    decisive = [p for p in pairs if p.winner is not None]
    if not decisive:
        return None, None, "no decisive pair"
    winners = [p.winner for p in decisive if scores[p.winner] is not None]
    losers = [p.b if p.winner == p.a else p.a for p in decisive]
    losers = [i for i in losers if scores[i] is not None]
    if not winners or not losers:
        return None, None, "no scored winner and loser"
    chosen = max(winners, key=lambda i: (scores[i], -i))  # first index on ties
    rejected = min(losers, key=lambda i: (scores[i], i))
    if not scores[chosen] > scores[rejected]:
        return chosen, rejected, "chosen not strictly better"
    return chosen, rejected, None


def _json_ref(value: Any) -> Any:
    if isinstance(value, (str, int, float)) or value is None:
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    path = getattr(value, "path", None)  # VideoSpec
    return path if isinstance(path, str) else None


def sift_item(rm: Any, item: SiftItem, settings: SiftSettings) -> SiftRecord:
    """Run pair-rank + point-sift on one item with a :class:`reward_core.UnifiedReward`."""
    pair_t, point_t = get_template(settings.pair_template), get_template(settings.point_template)
    pairs = disjoint_pairs(len(item.candidates))
    requests = pair_items(pair_t, item, pairs)
    verdicts = rm.compare_batch(pair_t, requests, swap=settings.swap, mode=settings.mode) if requests else []
    outcomes = [rank_pair(a, b, verdict) for (a, b), verdict in zip(pairs, verdicts)]

    point_results = rm.score_batch(point_t, point_items(point_t, item), mode=settings.mode)
    scores = [float(r.score) if r.ok and r.score is not None else None for r in point_results]

    chosen, rejected, reason = choose(outcomes, scores)
    if reason is None:
        status = "kept"
    elif all(p.status == "failed" for p in outcomes) or all(s is None for s in scores):
        status = "failed"
        errors = [p.error for p in outcomes if p.error] + [r.error for r in point_results if r.error]
        reason = errors[0] if errors else reason
    else:
        status = "dropped"
    return SiftRecord(
        id=item.id,
        order=item.order,
        status=status,
        reason=reason,
        chosen_index=chosen if status == "kept" else None,
        rejected_index=rejected if status == "kept" else None,
        chosen_score=scores[chosen] if status == "kept" else None,
        rejected_score=scores[rejected] if status == "kept" else None,
        candidates=[_json_ref(c) for c in item.candidates],
        scores=scores,
        pairs=outcomes,
        fields=dict(item.fields),
        meta=dict(item.meta),
        point_texts=[r.text for r in point_results],
    )


# --------------------------------------------------------------------------- crash-safe storage


class SiftLockedError(RuntimeError):
    """Another process is writing the same results file."""


class SiftWriter:
    """Appends one record per line; each line is written in full (short writes are continued, never
    dropped) and fsync'd.

    The file is locked (``flock``) while open, so a second sift on the same output fails at once with
    :class:`SiftLockedError` instead of judging everything twice. A line cut by a crash (no trailing
    newline) is truncated away on open, so the next append starts clean and a reader never sees half a record.
    """

    def __init__(self, path: str | os.PathLike):
        import fcntl

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise SiftLockedError(
                f"{self.path} is being written by another sift; wait for it to finish or use another output folder"
            ) from None
        self._drop_torn_tail()

    def _drop_torn_tail(self) -> None:
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            logger.warning("%s: dropping a torn last line (%d bytes)", self.path, len(data) - keep)
            os.ftruncate(self._fd, keep)
            os.fsync(self._fd)

    def append(self, record: SiftRecord) -> None:
        line = (json.dumps(record.to_dict(), ensure_ascii=False) + "\n").encode("utf-8")
        write_all(self._fd, line)
        os.fsync(self._fd)

    def close(self) -> None:
        os.close(self._fd)  # releases the lock

    def __enter__(self) -> SiftWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is written; a write that makes no progress raises ``OSError``."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(f"write made no progress ({len(view)} of {len(data)} bytes left)")
        view = view[written:]


def read_records(paths: Iterable[str | os.PathLike]) -> list[SiftRecord]:
    """Records from one or more JSONL files: the last line per id wins, ordered by (order, id).

    An unreadable line (not UTF-8, not a record) is logged with its line number and skipped; so is a
    torn last line left by a killed sift (the resumed sift judges that item again).
    """
    latest: dict[str, SiftRecord] = {}
    for path in sorted(Path(p) for p in paths):
        for line in iter_lines(path):
            try:
                if line.error is not None:
                    raise ValueError(line.error)
                record = SiftRecord.from_dict(json.loads(line.text))
            except (ValueError, TypeError, KeyError) as err:
                torn = "" if line.complete or line.error else "torn last line, no newline (a killed sift's unfinished record): "
                logger.warning("%s:%d: unreadable record skipped (%s%s)", path, line.number, torn, err)
                continue
            latest[record.id] = record
    return sorted(latest.values(), key=lambda r: (r.order, r.id))


def shard_path(out_dir: str | os.PathLike, shard_index: int = 0, num_shards: int = 1) -> Path:
    name = "sift.jsonl" if num_shards == 1 else f"sift-{shard_index:05d}-of-{num_shards:05d}.jsonl"
    return Path(out_dir) / name


SHARD_NAME = re.compile(r"sift-(\d+)-of-(\d+)\.jsonl")


def missing_shards(out_dir: str | os.PathLike) -> list[Path]:
    """The shard files ``out_dir`` should hold but does not: for every ``sift-I-of-N.jsonl`` present, the other
    shards of that N (a merge of 1 of 4 shards merges a quarter of the prompts)."""
    present: dict[int, set[int]] = {}
    for path in Path(out_dir).glob("sift-*-of-*.jsonl"):
        if match := SHARD_NAME.fullmatch(path.name):
            present.setdefault(int(match[2]), set()).add(int(match[1]))
    return [shard_path(out_dir, index, count) for count, indices in sorted(present.items())
            for index in range(count) if index not in indices]


def select_shard(items: Sequence[SiftItem], shard_index: int, num_shards: int) -> list[SiftItem]:
    """Round-robin shard of the input; ``order`` keeps the global position for the merge."""
    if not 0 <= shard_index < num_shards:
        raise ValueError(f"shard index {shard_index} not in [0, {num_shards})")
    return [item for item in items if item.order % num_shards == shard_index]


# --------------------------------------------------------------------------- the run loop


@dataclass
class SiftSummary:
    """Counts over the records of a run (or of merged shards)."""

    total: int = 0
    kept: int = 0
    dropped: int = 0
    failed: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, records: Sequence[SiftRecord]) -> SiftSummary:
        status = Counter(r.status for r in records)
        reasons = Counter(r.reason.split(":")[0][:80] for r in records if r.reason)
        return cls(len(records), status["kept"], status["dropped"], status["failed"], dict(reasons))


CandidateSource = Callable[[SiftItem], list[Any]]


def seed_for(item_id: str, seed: int) -> int:
    """A per-item seed that does not depend on run order, so a resumed run samples the same candidates."""
    digest = hashlib.sha256(f"{seed}:{item_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def run_sift(
    rm: Any,
    items: Iterable[SiftItem],
    settings: SiftSettings,
    results_path: str | os.PathLike,
    candidate_source: CandidateSource | None = None,
    retry_failed: bool = False,
    progress: bool = True,
) -> SiftSummary:
    """Sift every item not yet in ``results_path`` and append its record; returns this file's summary."""
    results_path = Path(results_path)
    with SiftWriter(results_path) as writer:  # locked before reading what is done
        done = {r.id: r for r in read_records([results_path])}
        skip = {i for i, r in done.items() if not (retry_failed and r.status == "failed")}
        todo = [item for item in items if item.id not in skip]
        if skip:
            logger.info("resuming %s: %d items done, %d to go", results_path, len(skip), len(todo))
        for item in tqdm(todo, desc="sift", disable=not progress):
            if not item.candidates:
                if candidate_source is None:
                    raise ValueError(f"item {item.id!r} has no candidates and no candidate source was given")
                item.candidates = list(candidate_source(item))
            writer.append(sift_item(rm, item, settings))
    return SiftSummary.of(read_records([results_path]))


# --------------------------------------------------------------------------- candidate sources


class TransformersPolicy:
    """Samples text candidates from a local image-text-to-text model (``transformers.generate``)."""

    def __init__(
        self,
        model_path: str,
        num_candidates: int = 10,
        max_new_tokens: int = 512,
        temperature: float = 0.7,
        seed: int = 0,
        device: str | None = None,
        dtype: str = "auto",
    ):
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.processor = AutoProcessor.from_pretrained(model_path)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = AutoModelForImageTextToText.from_pretrained(model_path, dtype=dtype).to(self.device).eval()
        self.num_candidates, self.max_new_tokens = num_candidates, max_new_tokens
        self.temperature, self.seed = temperature, seed

    def __call__(self, item: SiftItem) -> list[str]:
        import torch

        from reward_core.media import build_messages

        messages = build_messages(list(item.media), _question(item))
        inputs = self.processor.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
        ).to(self.device)
        torch.manual_seed(seed_for(item.id, self.seed))
        with torch.inference_mode():
            out = self.model.generate(
                **inputs,
                do_sample=True,
                temperature=self.temperature,
                max_new_tokens=self.max_new_tokens,
                num_return_sequences=self.num_candidates,
            )
        new_tokens = out[:, inputs["input_ids"].shape[1] :]
        return [t.strip() for t in self.processor.batch_decode(new_tokens, skip_special_tokens=True)]


class OpenAIPolicy:
    """Samples text candidates from any OpenAI-compatible chat server (vLLM, SGLang, transformers serve)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        num_candidates: int = 10,
        max_new_tokens: int = 512,
        temperature: float = 0.7,
        seed: int = 0,
        timeout: float = 600.0,
        api_key: str | None = None,
    ):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.num_candidates, self.max_new_tokens = model, num_candidates, max_new_tokens
        self.temperature, self.seed, self.timeout = temperature, seed, timeout
        self.headers = {"Authorization": f"Bearer {api_key or os.environ.get('OPENAI_API_KEY', 'EMPTY')}"}

    def _content(self, item: SiftItem) -> list[dict[str, Any]]:
        from reward_core.media import load_image

        parts = []
        for entry in item.media:
            buffer = io.BytesIO()
            load_image(entry).save(buffer, format="JPEG", quality=95)
            url = "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()
            parts.append({"type": "image_url", "image_url": {"url": url}})
        return parts + [{"type": "text", "text": _question(item)}]

    def __call__(self, item: SiftItem) -> list[str]:
        import httpx

        payload = {
            "model": self.model,
            "messages": [{"role": "user", "content": self._content(item)}],
            "n": self.num_candidates,
            "temperature": self.temperature,
            "max_tokens": self.max_new_tokens,
            "seed": seed_for(item.id, self.seed),
        }
        response = httpx.post(self.url, json=payload, headers=self.headers, timeout=self.timeout)
        response.raise_for_status()
        choices = response.json()["choices"]
        if len(choices) != self.num_candidates:
            raise RuntimeError(f"server returned {len(choices)} choices, asked for {self.num_candidates}")
        return [c["message"]["content"].strip() for c in choices]


def _question(item: SiftItem) -> str:
    for key in ("question", "prompt"):
        if key in item.fields:
            return item.fields[key]
    raise ValueError(f"item {item.id!r} has no 'question' or 'prompt' field to ask the policy")


# --------------------------------------------------------------------------- reporting


def write_summary(records: Sequence[SiftRecord], out_dir: str | os.PathLike) -> SiftSummary:
    """``summary.json`` (counts and reasons) and ``scores.png`` (chosen vs rejected score histogram)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = SiftSummary.of(records)
    atomic_write_text(out_dir / "summary.json", json.dumps(asdict(summary), indent=2) + "\n")
    kept = [r for r in records if r.status == "kept"]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed: no score histogram (pip install matplotlib)")
        return summary
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist([r.chosen_score for r in kept], bins=20, alpha=0.6, label="chosen")
    ax.hist([r.rejected_score for r in kept], bins=20, alpha=0.6, label="rejected")
    ax.set_xlabel("point score")
    ax.set_ylabel("pairs")
    ax.set_title(f"kept {summary.kept} / dropped {summary.dropped} / failed {summary.failed}")
    ax.legend()
    fig.tight_layout()
    with atomic_open(out_dir / "scores.png", "wb") as stream:
        fig.savefig(stream, dpi=100, format="png")
    plt.close(fig)
    return summary


def trl_preference_rows(records: Sequence[SiftRecord]) -> list[dict[str, Any]]:
    """Kept text-candidate records as TRL conversational preference rows (``images``, ``prompt``, ...).

    Image paths come from ``meta["images"]``; the prompt's user turn carries one ``{"type": "image"}``
    placeholder per image before the question, as TRL's vision DPO expects.
    """
    rows = []
    for record in records:
        if record.status != "kept":
            continue
        if not all(isinstance(c, str) for c in (record.chosen, record.rejected)):
            raise ValueError(f"item {record.id!r}: TRL rows need text candidates (use the raw records for media)")
        images = list(record.meta.get("images", []))
        question = record.fields.get("question", record.fields.get("prompt", ""))
        content = [{"type": "image", "text": None} for _ in images] + [{"type": "text", "text": question}]
        rows.append(
            {
                "id": record.id,
                "images": images,
                "prompt": [{"role": "user", "content": content}],
                "chosen": [{"role": "assistant", "content": record.chosen}],
                "rejected": [{"role": "assistant", "content": record.rejected}],
                "chosen_score": record.chosen_score,
                "rejected_score": record.rejected_score,
            }
        )
    return rows
