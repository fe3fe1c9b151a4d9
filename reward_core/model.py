"""``UnifiedReward``: the one object users hold. Renders templates, validates media, calls a backend,
and turns its text (``generate``) or answer log-probabilities (``logit``) into ``RewardResult``s."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from reward_core import logit
from reward_core.backends.base import Backend, BackendRequest
from reward_core.checkpoints import Checkpoint, llava_error, resolve
from reward_core.media import VIDEO_SUFFIXES, MediaError, VideoSpec, prepare_media
from reward_core.media_protocol import apply_protocol
from reward_core.prompts import Template, get_template, list_templates
from reward_core.results import RewardResult, Status
from reward_core.soft_verdict import read_soft_verdict, reads_soft_verdict

logger = logging.getLogger(__name__)

MODES = ("generate", "logit")


@dataclass
class JudgeItem:
    """One judge call: its media (in template order), template field values, and an optional id."""

    media: list[Any]
    fields: dict[str, Any] = field(default_factory=dict)
    id: str | None = None


class BatchResults(list):
    """Results in input order; swap-mode batches also carry ``position_consistency``
    (the share of successfully judged pairs whose verdict survived swapping the order)."""

    position_consistency: float | None = None


@dataclass
class _BadItem(JudgeItem):
    """An input that is not a judge item at all; it fails alone with ``reason``."""

    reason: str = ""


def _as_list(media: Any) -> list[Any]:
    """One media entry or a list of them; a single path string is one entry, never its characters."""
    return list(media) if isinstance(media, (list, tuple)) else [media]


def _as_item(item: JudgeItem | Mapping[str, Any]) -> JudgeItem:
    if isinstance(item, JudgeItem):
        return item if isinstance(item.media, list) else replace(item, media=_as_list(item.media))
    if not isinstance(item, Mapping):
        return _BadItem(media=[], reason=f"expected a JudgeItem or a mapping, got {type(item).__name__}")
    fields = item.get("fields") or {}
    if "media" not in item or not isinstance(fields, Mapping):
        missing = "no 'media'" if "media" not in item else f"'fields' is a {type(fields).__name__}, not a mapping"
        return _BadItem(media=[], id=item.get("id"), reason=missing)
    return JudgeItem(media=_as_list(item["media"]), fields=dict(fields), id=item.get("id"))


def _media_kind(template: Template) -> str:
    return "video" if template.media.startswith("video") else "image"


def _is_template(value: Any) -> bool:
    return isinstance(value, Template) or (isinstance(value, str) and value in list_templates())


def _is_video(entry: Any) -> bool:
    return isinstance(entry, VideoSpec) or (isinstance(entry, str) and entry.lower().endswith(VIDEO_SUFFIXES))


def infer_task(media: list[Any], fields: Mapping[str, Any]) -> str:
    """The task of a call from its inputs: an ``instruction`` is an edit, a ``question`` understanding,
    otherwise generation; video when any media entry is a video."""
    if "instruction" in fields:
        return "image_edit"
    kind = "video" if any(_is_video(m) for m in media) else "image"
    return f"{kind}_understanding" if {"question", "answer1", "response"} & set(fields) else f"{kind}_generation"


def _understanding(template: Template) -> bool:
    return {"answer1", "answer2"} <= set(template.fields)


def swapped(template: Template, item: JudgeItem) -> JudgeItem:
    """The same pair in the other order: answers swapped for understanding templates, otherwise the
    last two media (the candidates; an edit template's source image stays first)."""
    if _understanding(template):
        fields = dict(item.fields)
        fields["answer1"], fields["answer2"] = item.fields.get("answer2"), item.fields.get("answer1")
        return replace(item, fields=fields)
    media = list(item.media)
    if len(media) >= 2:
        media[-2], media[-1] = media[-1], media[-2]
    return replace(item, media=media)


def _swap_key(key: str) -> str:
    for a, b in (("1", "2"), ("2", "1")):
        if key == a:
            return b
        if key.endswith("/" + a):
            return key[: -len(a)] + b
    return key


def combine_swapped(original: RewardResult, swapped_result: RewardResult) -> RewardResult:
    """One verdict from both orders. Logit: P(1) averaged over the orders, winner = argmax.
    Generate: agreeing verdicts stand; disagreeing ones become a tie with consistency 0.0; soft verdicts
    (reasoning judges) are averaged as in logit mode, ``p(A>B) = (p1(A first) + 1 - p1(B first)) / 2``, and
    are ``None`` (with ``probs_error``) unless both orders have one."""
    orders = (("original", original), ("swapped", swapped_result))
    for order, result in orders:
        if not result.ok:
            return RewardResult.failure(result.status, f"{order} order: {result.error}", text=result.text)
    back = {1: 2, 2: 1, 0: 0, None: None}[swapped_result.winner]
    agree = original.winner == back
    text = None if original.text is None else f"{original.text}\n\n[swapped order]\n{swapped_result.text}"
    probs = scores = None
    winner = original.winner if agree else 0
    if original.probs and swapped_result.probs:
        p1 = (original.probs["1"] + swapped_result.probs["2"]) / 2
        probs = {"1": p1, "2": 1.0 - p1}
        if original.text is None:  # logit mode: the probabilities are the verdict
            winner = 1 if p1 > 0.5 else 2 if p1 < 0.5 else 0
    missing = [f"{order} order: {result.probs_error}" for order, result in orders if result.probs_error]
    if original.scores and swapped_result.scores:
        mirrored = {_swap_key(k): v for k, v in swapped_result.scores.items()}
        scores = {k: (v + mirrored[k]) / 2 if k in mirrored else v for k, v in original.scores.items()}
    return RewardResult(
        status=Status.OK, winner=winner, probs=probs, scores=scores, text=text, consistency=1.0 if agree else 0.0,
        probs_error="; ".join(missing) if probs is None and missing else None,
    )


class UnifiedReward:
    """A UnifiedReward judge over any :class:`~reward_core.backends.base.Backend`."""

    def __init__(
        self,
        backend: Backend,
        batch_size: int = 8,
        max_new_tokens: int | None = None,
        chunk_size: int = 64,
        checkpoint: Checkpoint | None = None,
        soft_verdicts: bool = True,
    ):
        self.backend = backend
        self.soft_verdicts = soft_verdicts  # reasoning pair templates in generate mode: also read P("1") vs P("2")
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.chunk_size = max(chunk_size, batch_size)
        self.checkpoint = checkpoint  # None: unknown judge (no default templates, no format check)

    @classmethod
    def from_pretrained(
        cls,
        path: str,
        backend: str = "transformers",
        device: str | None = None,
        dtype: str = "auto",
        batch_size: int = 8,
        attn_implementation: str | None = None,
        max_new_tokens: int | None = None,
        checkpoint: str | None = None,
        **backend_kwargs: Any,
    ) -> UnifiedReward:
        """Load a Qwen2.5-VL / Qwen3-VL / Qwen3.5 UnifiedReward checkpoint in-process.

        ``path`` is a hub id or a local folder; its :class:`~reward_core.checkpoints.Checkpoint` (family,
        default templates, chat-template options) is resolved from the id, the folder name or its
        ``config.json`` (``checkpoint=`` names the family of a renamed local copy). Loader options
        (``device_map``, ``dtype``/``torch_dtype``, ``quantization_config``, ``max_memory``, ...) go to the
        model loader, generation options to ``generate_kwargs={...}``. A LLaVA-format checkpoint raises
        :class:`~reward_core.checkpoints.LlavaCheckpointError` before anything is loaded.
        """
        if backend != "transformers":
            raise ValueError(f"unknown backend {backend!r}: from_pretrained runs 'transformers'; use from_server for HTTP")
        from reward_core.backends.transformers_backend import TransformersBackend

        info = resolve(path, checkpoint)
        if not info.in_process:
            raise llava_error(info.hub_id if info.registered else str(path))
        backend_kwargs.setdefault("chat_template_kwargs", dict(info.chat_template_kwargs))
        runner = TransformersBackend.from_pretrained(
            path, device=device, dtype=dtype, batch_size=batch_size, attn_implementation=attn_implementation, **backend_kwargs
        )
        return cls(runner, batch_size=batch_size, max_new_tokens=max_new_tokens, checkpoint=info)

    @classmethod
    def from_server(
        cls,
        base_url: str | Sequence[str],
        model: str | None = None,
        concurrency: int = 16,
        checkpoint: str | None = None,
        **kwargs: Any,
    ) -> UnifiedReward:
        """Judge through an OpenAI-compatible server (vLLM, SGLang, ``transformers serve``).

        ``base_url`` is one server or several data-parallel replicas (a list, or "URL1,URL2"); results
        keep input order. Keyword arguments go to `OpenAIBackend` (``api_key``, ``logprob_tokens`` ...).
        ``checkpoint`` (the served hub id, e.g. ``"CodeGoat24/UnifiedReward-7b-v1.5"``) picks its default
        templates and sends its chat-template options (thinking off on Qwen3.5) with every request.
        """
        from reward_core.backends.openai_backend import OpenAIBackend

        max_new_tokens = kwargs.pop("max_new_tokens", None)
        info = resolve(checkpoint, checkpoint) if checkpoint is not None else None
        if info is not None and info.chat_template_kwargs:
            extra = dict(kwargs.pop("extra_body", None) or {})
            extra.setdefault("chat_template_kwargs", dict(info.chat_template_kwargs))
            kwargs["extra_body"] = extra
        backend = OpenAIBackend(base_url, model=model, concurrency=concurrency, **kwargs)
        return cls(backend, max_new_tokens=max_new_tokens, checkpoint=info)

    # --- single items -------------------------------------------------------------------------

    def judge(
        self, template: str | Template, media: Any, mode: str = "generate", force: bool = False, **fields: Any
    ) -> RewardResult:
        """Run ``template`` on one item's ``media`` (one entry or a list, in template order)."""
        max_new_tokens = fields.pop("max_new_tokens", None)
        item = JudgeItem(media=_as_list(media), fields=fields)
        return self.judge_batch(template, [item], mode=mode, max_new_tokens=max_new_tokens, force=force)[0]

    def score(
        self,
        template: Any = None,
        media: Any = None,
        mode: str = "generate",
        kind: str | None = None,
        force: bool = False,
        **fields: Any,
    ) -> RewardResult:
        """Pointwise verdict (``result.score`` on the template's scale).

        ``rm.score(image, prompt=...)`` picks the checkpoint's template for the task (from the media and
        fields) and ``kind`` (template mode, default ``point_score``; ``multi_score`` for ACS/APS).
        """
        if media is None and not _is_template(template):  # rm.score(media, **fields)
            template, media = None, template
        if template is None:
            task = infer_task(_as_list(media), fields)
            template = self.default_template(task, kind or ("edit_point_score" if task == "image_edit" else "point_score"))
        template = self._template(template, pairwise=False)
        return self.judge(template, media, mode=mode, force=force, **fields)

    def compare(
        self,
        template: Any = None,
        media1: Any = None,
        media2: Any = None,
        swap: bool = False,
        mode: str = "generate",
        kind: str | None = None,
        force: bool = False,
        **fields: Any,
    ) -> RewardResult:
        """Pairwise verdict (``result.winner``: 1, 2 or 0 = tie).

        Generation templates take the two candidates as ``media1``/``media2`` (an edit template's
        source image first: ``media1=[source, edited1]``); understanding templates take one
        ``media1`` and ``answer1``/``answer2`` fields. ``swap=True`` also judges the other order.
        Without a template (``rm.compare(a, b, prompt=...)``) the checkpoint's pairwise template for the
        task is used (``kind`` overrides its mode: ``pair_rank``, ``pair_score``, ``cot_pair_rank`` ...).
        """
        if template is not None and not _is_template(template):  # rm.compare(media1, media2, **fields)
            template, media1, media2 = None, template, media1
        max_new_tokens = fields.pop("max_new_tokens", None)
        media = _as_list(media1) + ([] if media2 is None else _as_list(media2))
        if template is None:
            task = infer_task(media, fields)
            pair_mode = "pair_rank" if task == "image_edit" else self._pair_mode
            template = self.default_template(task, kind or pair_mode)
        item = JudgeItem(media=media, fields=fields)
        return self.compare_batch(template, [item], swap=swap, mode=mode, max_new_tokens=max_new_tokens, force=force)[0]

    def default_template(self, task: str, kind: str) -> Template:
        """This judge's template for ``task`` and template mode ``kind`` (see :mod:`reward_core.checkpoints`)."""
        if self.checkpoint is None:
            raise ValueError(
                "this judge's checkpoint is unknown, so there is no default template: pass a template key, "
                "or from_server(..., checkpoint='CodeGoat24/...')"
            )
        return self.checkpoint.default_template(task, kind)

    @property
    def _pair_mode(self) -> str:
        return self.checkpoint.pair_mode if self.checkpoint is not None else "pair_rank"

    # --- batches ------------------------------------------------------------------------------

    def score_batch(
        self, template: str | Template, items: Iterable[JudgeItem | Mapping[str, Any]], mode: str = "generate", **kwargs: Any
    ) -> BatchResults:
        return self.judge_batch(self._template(template, pairwise=False), items, mode=mode, **kwargs)

    def compare_batch(
        self,
        template: str | Template,
        items: Iterable[JudgeItem | Mapping[str, Any]],
        swap: bool = False,
        mode: str = "generate",
        **kwargs: Any,
    ) -> BatchResults:
        """Pairwise verdicts; with ``swap=True`` each pair is judged in both orders and combined."""
        template = self._template(template, pairwise=True)
        items = [_as_item(item) for item in items]
        if not swap:
            return self.judge_batch(template, items, mode=mode, **kwargs)
        both = self.judge_batch(template, items + [swapped(template, item) for item in items], mode=mode, **kwargs)
        results = BatchResults(combine_swapped(a, b) for a, b in zip(both[: len(items)], both[len(items) :]))
        judged = [r.consistency for r in results if r.consistency is not None]
        results.position_consistency = sum(judged) / len(judged) if judged else None
        logger.info("position consistency over %d pairs: %s", len(judged), results.position_consistency)
        return results

    def judge_batch(
        self,
        template: str | Template,
        items: Iterable[JudgeItem | Mapping[str, Any]],
        mode: str = "generate",
        progress: bool = False,
        max_new_tokens: int | None = None,
        force: bool = False,
        soft_verdicts: bool | None = None,
    ) -> BatchResults:
        """Judge many items; results keep the input order and a bad item fails alone.

        A template of the other prompt format than the checkpoint's (a LLaVA ``<image>`` prompt on a Qwen
        judge) raises ``ValueError`` unless ``force=True``. A reasoning pair template (Think, Flex) in
        generate mode also reads its soft verdict into ``probs`` unless ``soft_verdicts`` (default: the
        judge's ``soft_verdicts``) is false (see :mod:`reward_core.soft_verdict`).
        """
        template = get_template(template)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if self.checkpoint is not None:
            self.checkpoint.check_template(template, force=force)
        candidates: list[str] | logit.ScoreTrie | None = None  # logit mode: pair candidates or a score trie
        if mode == "logit":
            candidates = logit.candidates_for(template) if template.pairwise else logit.trie_for(template)
        soft = mode == "generate" and reads_soft_verdict(template)
        soft = soft and (self.soft_verdicts if soft_verdicts is None else soft_verdicts)
        items = [_as_item(item) for item in items]
        floor = (self.checkpoint.min_new_tokens if self.checkpoint is not None else None) or 0
        budget = max_new_tokens or self.max_new_tokens or max(template.max_new_tokens, floor)
        results = BatchResults([None] * len(items))
        from tqdm.auto import tqdm

        chunk_size = self._chunk_size(len(items))
        with tqdm(total=len(items), disable=not progress, desc=f"judge {template.key}", unit="item") as bar:
            for start in range(0, len(items), chunk_size):
                chunk = list(range(start, min(start + chunk_size, len(items))))
                for index, result in zip(chunk, self._judge_chunk(template, [items[i] for i in chunk], candidates, budget, soft)):
                    results[index] = result
                bar.update(len(chunk))
        return results

    # --- internals ----------------------------------------------------------------------------

    def _chunk_size(self, count: int) -> int:
        """Items per backend call: ``chunk_size``, or all of them for a backend that queues a call's requests
        itself (HTTP: one queue and one deadline for the whole call, so a stuck request never idles the replicas)."""
        return max(1, count) if getattr(self.backend, "queues_requests", False) else self.chunk_size

    @staticmethod
    def _template(template: str | Template, pairwise: bool) -> Template:
        template = get_template(template)
        if template.pairwise != pairwise:
            use = "compare" if template.pairwise else "score"
            raise ValueError(f"template {template.key!r} is {'pairwise' if template.pairwise else 'pointwise'}: use {use}()")
        return template

    def _request(self, template: Template, item: JudgeItem, soft: bool = False) -> BackendRequest:
        """Validated backend request; raises MediaError / ValueError for this item only."""
        if isinstance(item, _BadItem):
            raise ValueError(item.reason)
        text = template.render(**item.fields)
        media = prepare_media(item.media, _media_kind(template), template.media_count)
        return BackendRequest(
            media=apply_protocol(template, media), text=text, answer_prefix=template.answer_prefix, soft_verdict=soft
        )

    def _judge_chunk(
        self,
        template: Template,
        items: list[JudgeItem],
        candidates: list[str] | logit.ScoreTrie | None,
        max_new_tokens: int,
        soft: bool = False,
    ) -> list[RewardResult]:
        results: list[RewardResult | None] = [None] * len(items)
        requests, positions = [], []
        for i, item in enumerate(items):
            try:
                requests.append(self._request(template, item, soft))
                positions.append(i)
            except MediaError as error:
                results[i] = RewardResult.failure(Status.MEDIA_ERROR, str(error))
            except ValueError as error:  # missing template fields: an input problem of this item
                results[i] = RewardResult.failure(Status.MEDIA_ERROR, f"bad item: {error}")
            except Exception as error:  # anything else about this one input still fails it alone
                logger.warning("judge item %d rejected: %r", i, error)
                results[i] = RewardResult.failure(Status.MEDIA_ERROR, f"bad item: {type(error).__name__}: {error}")
        if requests:
            for i, result in zip(positions, self._run(template, requests, candidates, max_new_tokens)):
                results[i] = result
        return results

    def _run(
        self, template: Template, requests: list[BackendRequest], candidates: list[str] | logit.ScoreTrie | None, max_new_tokens: int
    ) -> list[RewardResult]:
        from reward_core.parsers import parse

        try:
            if isinstance(candidates, logit.ScoreTrie):
                answers = self.backend.answer_node_probs(requests, candidates.nodes)
            elif candidates is not None:
                answers = self.backend.answer_logprobs(requests, candidates)
            else:
                answers = self.backend.generate(requests, max_new_tokens)
        except Exception as error:  # a backend should report per item; never lose the batch if it raises
            logger.exception("backend failed on a batch of %d", len(requests))
            return [RewardResult.failure(Status.BACKEND_ERROR, f"{type(error).__name__}: {error}") for _ in requests]
        results = []
        for request, answer in zip(requests, answers):
            if answer.error is not None:
                status = Status.MEDIA_ERROR if getattr(answer, "media_error", False) else Status.BACKEND_ERROR
                results.append(RewardResult.failure(status, answer.error))
            elif isinstance(candidates, logit.ScoreTrie):
                results.append(logit.result_from_node_probs(template, candidates, answer.probs))
            elif candidates is not None:
                results.append(logit.result_from_logprobs(template, answer.logprobs))
            else:
                result = parse(template.parser, answer.text)
                result.text = answer.text if result.text is None else result.text
                if request.soft_verdict and result.ok:
                    soft = read_soft_verdict(template, result.winner, answer)
                    result.probs, result.probs_error = soft.probs, soft.error
                results.append(result)
        return results
