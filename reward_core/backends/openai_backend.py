"""Backend for OpenAI-compatible chat servers (vLLM, SGLang, ``transformers serve``).

One HTTP request per judge call, many in flight (bounded by ``concurrency``), each retried with
jittered exponential backoff (or a 429/503's ``Retry-After``, capped at ``retry_after_max``) on
connection errors, 408/429 and 5xx, each attempt within ``timeout`` (body included), all within an
overall ``deadline`` per batch; an answer over ``max_response_bytes`` (decoded) fails its item.
Sampling is explicit (``temperature=0``, ``top_p=1``), unlike upstream's client, which sends none and
so inherits the checkpoint's sampling defaults.

``base_url`` may list several data-parallel replicas (one or many nodes): requests go to the live
replica with the fewest in flight; a replica that keeps refusing connections or timing out, or answers
"wrong server" (401/403/404), is taken out and tried again later, and a failed attempt is retried on
another one; a replica silent for a whole attempt is taken out after that first timeout while another is
live; when every replica is out the remaining items fail at once (circuit breaker). The replicas' health
lasts across calls: one taken out stays out until a health probe passes (or its ``revive_after`` ends). At
every call the live replicas' ``/v1/models`` are read at once and must agree (id, ``root``,
``max_model_len``): one that serves another judge gets no items.

Logit mode prefills the assistant turn with the answer prefix (``continue_final_message``) and reads
the log-probabilities of one generated token: this needs vLLM (or a server with the same extensions);
a server that rejects it gets a clear per-item error, never a silent fallback to text. With
``logprob_tokens="exact"`` (vLLM >= 0.32) the request names the candidate token ids
(``logprob_token_ids``, resolved once per answer prefix through the server's ``/tokenize`` or a local
tokenizer) and gets exactly their log-probabilities; ``"top"`` reads the top-20 tokens (a candidate
outside them counts as probability 0); ``"auto"`` uses exact ids when they can be resolved, else top-20.

An API key (``api_key``, else ``$UNIFIEDREWARD_API_KEY`` / ``$OPENAI_API_KEY``) goes as a bearer token
to the configured URLs only, and is never logged: a server quoting it back in an answer gets ``***``
in its place in every error and log line.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from reward_core.backends.base import AnswerLogprobs, BackendRequest, Generation, NodeProbs
from reward_core.backends.http_client import (
    WRONG_SERVER_STATUS,
    Replica,
    Replicas,
    RequestFailed,
    RetryPolicy,
    attempt_limit,
    exchange,
    gather_ordered,
    post_json,
    probing,
    redact_url,
    run_sync,
)
from reward_core.backends.openai_messages import (
    IMAGE_FORMATS,
    VIDEO_MODES,
    chat_messages,
    completion_text,
    first_token_logprobs,
    generated_token_logprobs,
    media_parts,
    token_id_logprobs,
)
from reward_core.logit import answer_text
from reward_core.media import FRAMES_PER_VIDEO, MediaError
from reward_core.score_trie import SYMBOLS

logger = logging.getLogger(__name__)

TOP_LOGPROBS = 20  # the most vLLM's OpenAI server returns by default (--max-logprobs 20)
LOGIT_UNSUPPORTED = "logit mode is not supported by this server"
LOGPROB_TOKENS = ("auto", "exact", "top")
API_KEY_VARIABLES = ("UNIFIEDREWARD_API_KEY", "OPENAI_API_KEY")
DISCOVERY_TIMEOUT = 5.0  # seconds for one replica's /v1/models: small; a silent replica must not hold the call
PROBE_INTERVAL = 2.0  # seconds between two health probes of a replica, while a call runs
MAX_RESPONSE_BYTES = 16 * 2**20  # a judge's answer is kilobytes; top-20 logprobs of a long generation, a few MB


def split_urls(base_url: str | Sequence[str]) -> list[str]:
    """One or several server roots ("URL", "URL1,URL2" or a list), without a trailing ``/v1``."""
    urls = [base_url] if isinstance(base_url, str) else list(base_url)
    urls = [u.strip().rstrip("/").removesuffix("/v1") for url in urls for u in url.replace(",", " ").split()]
    if not urls:
        raise ValueError("need at least one server URL")
    return urls


class OpenAIBackend:
    """Judge calls over an OpenAI-compatible ``/v1/chat/completions`` endpoint.

    Args:
        base_url: server root, with or without the trailing ``/v1`` ("http://127.0.0.1:8080"), or several
            replicas of the same judge (a list, or one string separated by commas).
        model: served model name; ``None`` asks ``/v1/models`` once (the single served model, or "UnifiedReward").
        concurrency: requests in flight at once.
        timeout: seconds per HTTP attempt, the whole exchange (connect, send, the full answer).
        deadline: seconds for a whole `generate` / `answer_logprobs` call; unfinished items fail.
        max_attempts: attempts per request (the first one included); with the default backoff the
            retries span about 30-55 s, enough to ride out a server restart.
        retry_after_max: the longest wait a 429/503's ``Retry-After`` gets (seconds).
        max_response_bytes: largest answer body read, counted decoded (a gzip bomb stops there);
            a larger one fails its item. ``None``: no cap.
        image_format: "jpeg" (q95, like upstream) or "png" (lossless).
        video_mode: "frames" (8 frames per video as images, like upstream's vLLM path) or "video_url".
        temperature, top_p: sampling parameters sent with every request.
        api_key: sent as a bearer token (SGLang/vLLM ``--api-key``); default ``$UNIFIEDREWARD_API_KEY``,
            else ``$OPENAI_API_KEY``.
        extra_body: extra JSON fields merged into every request (e.g. ``{"top_k": 1}`` for vLLM).
        logprob_tokens: logit mode's read: "exact" candidate ids, "top" 20, or "auto" (exact when resolvable).
        tokenizer: checkpoint (path or hub id) whose tokenizer resolves the candidate ids; default: the
            server's ``/tokenize``.
        breaker_threshold: consecutive connection failures that take a replica out (``None``: never).
        revive_after: seconds before a replica that was taken out is tried again.
        discovery_timeout: seconds each replica's ``/v1/models`` may take (all are asked at once), and each
            health probe (``/health``, ``/v1/models``).
        probe_interval: seconds between health probes of each replica while a call runs (several replicas
            only; ``None``: no probes).
        progress: show a tqdm bar per batch.
    """

    queues_requests = True  # `UnifiedReward.judge_batch` hands it a whole call: one queue, one deadline

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        *,
        concurrency: int = 16,
        timeout: float = 120.0,
        deadline: float | None = 600.0,
        max_attempts: int = 10,
        backoff_base: float = 0.5,
        backoff_max: float = 10.0,
        retry_after_max: float = 30.0,
        max_response_bytes: int | None = MAX_RESPONSE_BYTES,
        image_format: str = "jpeg",
        jpeg_quality: int = 95,
        video_mode: str = "frames",
        frames_per_video: int = FRAMES_PER_VIDEO,
        temperature: float = 0.0,
        top_p: float = 1.0,
        api_key: str | None = None,
        extra_body: dict[str, Any] | None = None,
        logprob_tokens: str = "auto",
        tokenizer: str | None = None,
        breaker_threshold: int | None = 3,
        revive_after: float = 5.0,
        discovery_timeout: float = DISCOVERY_TIMEOUT,
        probe_interval: float | None = PROBE_INTERVAL,
        progress: bool = False,
    ):
        if image_format not in IMAGE_FORMATS:
            raise ValueError(f"image_format must be one of {sorted(IMAGE_FORMATS)}, got {image_format!r}")
        if video_mode not in VIDEO_MODES:
            raise ValueError(f"video_mode must be one of {VIDEO_MODES}, got {video_mode!r}")
        if logprob_tokens not in LOGPROB_TOKENS:
            raise ValueError(f"logprob_tokens must be one of {LOGPROB_TOKENS}, got {logprob_tokens!r}")
        self.base_urls = split_urls(base_url)
        self.base_url = self.base_urls[0]
        self.model = model
        self.concurrency = concurrency
        self.timeout = timeout
        self.deadline = deadline
        self.retry = RetryPolicy(
            max_attempts=max_attempts, backoff_base=backoff_base, backoff_max=backoff_max,
            attempt_timeout=timeout, retry_after_max=retry_after_max,
        )  # fmt: skip
        self.max_response_bytes = max_response_bytes
        self.image_format = image_format
        self.jpeg_quality = jpeg_quality
        self.video_mode = video_mode
        self.frames_per_video = frames_per_video
        self.sampling = {"temperature": temperature, "top_p": top_p}
        api_key = api_key or next((os.environ[v] for v in API_KEY_VARIABLES if os.environ.get(v)), None)
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
        self._secrets = (api_key,) if api_key else ()
        self.extra_body = dict(extra_body or {})
        self.logprob_tokens = logprob_tokens
        self.tokenizer = tokenizer
        self.breaker = {"breaker_threshold": breaker_threshold, "revive_after": revive_after}
        self.discovery_timeout = discovery_timeout
        self.probe_interval = probe_interval
        self.progress = progress
        self._token_ids: dict[tuple, Any] = {}  # resolved exact ids (or None: top-20) per prefix and answer set
        self._replica_health: Replicas | None = None  # the replicas' health, kept across calls (`_replicas`)
        self._judge: tuple[ServedModel, ...] | None = None  # the judge the replicas last agreed on
        self._local_tokenizer = None
        self._token_logprobs_refused: str | None = None  # why this server gives no soft verdicts (it refused logprobs)

    def __repr__(self) -> str:  # never shows the API key or URL credentials
        urls = ", ".join(redact_url(u) for u in self.base_urls)
        return f"OpenAIBackend([{urls}], model={self.model!r})"

    # ----- sync facade -------------------------------------------------------------------------

    def generate(self, requests: list[BackendRequest], max_new_tokens: int) -> list[Generation]:
        """Generated text per request, in input order; failures come back as ``Generation(error=...)``."""
        return run_sync(lambda: self.agenerate(requests, max_new_tokens))

    def answer_logprobs(self, requests: list[BackendRequest], candidates: list[str]) -> list[AnswerLogprobs]:
        """Log-probability of each candidate answer after each request's answer prefix, in input order."""
        return run_sync(lambda: self.aanswer_logprobs(requests, candidates))

    def answer_node_probs(self, requests: list[BackendRequest], nodes: tuple[str, ...]) -> list[NodeProbs]:
        """P(next symbol) at each score-trie node: one prefilled one-token request per node, reading the
        symbols' exact ids (``logprob_tokens``; in "top" mode a symbol outside the top 20 counts as 0).
        The server's prefix cache keeps each request cheap."""
        return run_sync(lambda: self.aanswer_node_probs(requests, nodes))

    def served_models(self) -> list[str]:
        """Model ids listed by the server's ``/v1/models``."""
        return run_sync(self._served_models)

    # ----- async API ---------------------------------------------------------------------------

    async def agenerate(self, requests: list[BackendRequest], max_new_tokens: int) -> list[Generation]:
        deadline = self._batch_deadline()
        async with self._call(deadline) as (client, encode, replicas, model):

            def job(request: BackendRequest) -> Callable[[], Awaitable[Generation]]:
                async def run() -> Generation:
                    try:
                        parts = await encode(request)
                    except MediaError as exc:
                        return Generation(error=f"media error: {exc}", media_error=True)
                    payload = self._payload(parts, request.text, model, None, max_tokens=max_new_tokens)
                    soft = request.soft_verdict and self._token_logprobs_refused is None
                    if soft:
                        payload.update(logprobs=True, top_logprobs=TOP_LOGPROBS)
                    try:
                        body = await self._post(client, replicas, CHAT_PATH, payload, deadline)
                    except RequestFailed as exc:
                        if not (soft and is_feature_refusal(exc)):
                            raise
                        self._token_logprobs_refused = f"the server refused token logprobs ({exc})"
                        logger.warning("%s; generating without soft verdicts", self._token_logprobs_refused)
                        payload = {k: v for k, v in payload.items() if k not in ("logprobs", "top_logprobs")}
                        body = await self._post(client, replicas, CHAT_PATH, payload, deadline)
                    try:
                        generation = Generation(text=completion_text(body))
                    except ValueError as exc:
                        return Generation(error=str(exc))
                    if request.soft_verdict:
                        try:
                            generation.tokens, generation.token_logprobs = generated_token_logprobs(body)
                        except ValueError as exc:
                            generation.logprobs_error = self._token_logprobs_refused or str(exc)
                    return generation

                return run

            return await self._gather([job(r) for r in requests], deadline, lambda e: Generation(error=e), replicas)

    async def aanswer_logprobs(self, requests: list[BackendRequest], candidates: list[str]) -> list[AnswerLogprobs]:
        nodes = prefill_nodes(candidates)
        deadline = self._batch_deadline()
        async with self._call(deadline) as (client, encode, replicas, model):
            id_tables = {}
            for prefix in {r.answer_prefix for r in requests if r.answer_prefix is not None}:
                id_tables[prefix] = await self._candidate_ids(client, replicas, model, prefix, candidates, nodes, deadline)

            def job(request: BackendRequest) -> Callable[[], Awaitable[AnswerLogprobs]]:
                async def run() -> AnswerLogprobs:
                    if request.answer_prefix is None:
                        return AnswerLogprobs(error="logit mode needs an answer prefix; this template has none")
                    ids = id_tables[request.answer_prefix]
                    if isinstance(ids, str):
                        return AnswerLogprobs(error=ids)
                    try:
                        parts = await encode(request)
                    except MediaError as exc:
                        return AnswerLogprobs(error=f"media error: {exc}", media_error=True)
                    distributions = {}
                    for node in nodes:  # one request per trie node: 1 for pairs and 1-5 scales
                        prefill = answer_text(request.answer_prefix, node)
                        node_ids = None if ids is None else ids[node]
                        payload = self._payload(parts, request.text, model, prefill, max_tokens=1, token_ids=node_ids)
                        distributions[node] = await self._first_token_logprobs(client, replicas, payload, node_ids, deadline)
                    logprobs = candidate_logprobs(candidates, distributions)
                    if ids is not None:
                        return AnswerLogprobs(logprobs=logprobs)
                    missing = [c for c, lp in logprobs.items() if lp == -math.inf]
                    if len(missing) == len(candidates):
                        return AnswerLogprobs(error=f"no candidate among the top-{TOP_LOGPROBS} tokens: {candidates}")
                    if missing:
                        logger.warning("candidates %s not in the top-%d tokens: log-probability -inf", missing, TOP_LOGPROBS)
                    return AnswerLogprobs(logprobs=logprobs)

                return run

            return await self._gather([job(r) for r in requests], deadline, lambda e: AnswerLogprobs(error=e), replicas)

    async def aanswer_node_probs(self, requests: list[BackendRequest], nodes: tuple[str, ...]) -> list[NodeProbs]:
        deadline = self._batch_deadline()
        async with self._call(deadline) as (client, encode, replicas, model):
            id_tables = {}
            for prefix in {r.answer_prefix for r in requests if r.answer_prefix is not None}:
                id_tables[prefix] = await self._cached_ids(
                    (prefix, "score-trie"), lambda p=prefix: self._symbol_ids(client, replicas, model, p, nodes, deadline)
                )

            def job(request: BackendRequest) -> Callable[[], Awaitable[NodeProbs]]:
                async def run() -> NodeProbs:
                    if request.answer_prefix is None:
                        return NodeProbs(error="logit mode needs an answer prefix; this template has none")
                    ids = id_tables[request.answer_prefix]
                    if isinstance(ids, str):
                        return NodeProbs(error=ids)
                    try:
                        parts = await encode(request)
                    except MediaError as exc:
                        return NodeProbs(error=f"media error: {exc}")
                    probs = {}
                    for node in nodes:
                        prefill = answer_text(request.answer_prefix, node)
                        payload = self._payload(parts, request.text, model, prefill, max_tokens=1, token_ids=ids)
                        top = await self._first_token_logprobs(client, replicas, payload, ids, deadline)
                        probs[node] = {s: math.exp(top[s]) for s in SYMBOLS if s in top}
                    return NodeProbs(probs=probs)

                return run

            return await self._gather([job(r) for r in requests], deadline, lambda e: NodeProbs(error=e), replicas)

    # ----- helpers -----------------------------------------------------------------------------

    def _client(self) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        return httpx.AsyncClient(timeout=self.timeout, limits=limits)  # no default headers: see _post

    @contextlib.asynccontextmanager
    async def _call(self, deadline: float | None):
        """One call's HTTP client, media encoder, replicas and the model name to send (after discovery), with
        the replicas' health probes running in the background until the call ends."""
        async with self._client() as client, self._encoder() as encode:
            replicas = self._replicas()
            replicas.try_all_if_out()
            model, judge = await self._resolve_model(client, replicas, deadline)
            self._judge = judge or self._judge
            async with self._probing(replicas, self._judge):
                yield client, encode, replicas, model

    @contextlib.asynccontextmanager
    async def _probing(self, replicas: Replicas, judge: tuple[ServedModel, ...] | None):
        """Health probes of several replicas (`probe_interval`), on their own small client (probes never
        wait for a connection that items hold): `_probe`."""
        if self.probe_interval is None or len(replicas) < 2:
            yield
            return
        limits = httpx.Limits(max_connections=2 * len(replicas), max_keepalive_connections=len(replicas))
        async with httpx.AsyncClient(timeout=self.discovery_timeout, limits=limits) as client:
            probe = lambda replica: self._probe(client, replicas, replica, judge)  # noqa: E731
            async with probing(replicas, probe, self.probe_interval):
                yield

    async def _probe(self, client, replicas: Replicas, replica: Replica, judge: tuple[ServedModel, ...] | None) -> None:
        """One health probe: ``/health`` must answer (a 404: no such route, fine), then, when the call's judge
        is known, ``/v1/models`` must still list it: a replica restarted on another checkpoint is held out
        before it answers items."""
        limit = min(self.timeout, self.discovery_timeout)
        health = exchange(client, "GET", f"{replica.url}/health", self.max_response_bytes, headers=self._headers)
        try:
            answer = await asyncio.wait_for(health, limit)
            failure = None if answer.is_success or answer.status == 404 else f"/health answered HTTP {answer.status}"
        except asyncio.TimeoutError:
            failure = f"/health gave no answer within {limit:g}s"
        except (httpx.HTTPError, RequestFailed) as exc:
            failure = f"/health: {type(exc).__name__}: {exc or 'connection failed'}"
        if failure is None and judge is not None:
            models = await self._models_of(client, replica, replicas, None)
            if isinstance(models, str):
                failure = models
            elif models != judge:
                replicas.probed(replica, f"serves another judge: {describe(models)}, not {describe(judge)}", force=True)
                return
        replicas.probed(replica, failure)

    def _replicas(self) -> Replicas:
        """The replicas and their health (breaker, held-out status, probe schedule), one for all of this backend's
        calls: a replica taken out stays out across calls until a probe passes (or its ``revive_after`` ends;
        when all are out, a call tries them all again). With probes, a silent replica is held out until one passes."""
        if self._replica_health is None:
            probes = self.probe_interval is not None and len(self.base_urls) > 1
            self._replica_health = Replicas(self.base_urls, **self.breaker, secrets=self._secrets, hold_silent=probes)
        return self._replica_health

    async def _post(self, client, replicas: Replicas, path: str, payload: dict, deadline) -> dict[str, Any]:
        """POST to the configured replicas only; the key goes in this request's headers, never a shared client's."""
        cap = self.max_response_bytes
        return await post_json(client, replicas, path, payload, self.retry, deadline, self._headers, cap)

    @contextlib.asynccontextmanager
    async def _encoder(self):
        """``await encode(request)`` -> content parts, off the event loop but one at a time.

        One worker thread: decoding/encoding overlaps with the HTTP traffic, and PIL images
        shared between requests (an edit's source image) are never touched by two threads at once.
        """
        loop = asyncio.get_running_loop()
        with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="unifiedreward-media") as pool:
            yield lambda request: loop.run_in_executor(pool, self._media_parts, request)

    def _batch_deadline(self) -> float | None:
        return None if self.deadline is None else time.monotonic() + self.deadline

    async def _gather(self, jobs, deadline, on_error, replicas: Replicas):
        """Run the jobs (see `gather_ordered`); every error that comes back is scrubbed of credentials."""
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(jobs), desc="judge (http)")
        limit = f" ({self.deadline:g}s)" if self.deadline is not None else ""

        def error(reason: str):
            return on_error(reason.replace("deadline exceeded", f"deadline exceeded{limit}", 1))

        try:
            results = await gather_ordered(jobs, self.concurrency, deadline, error, bar.update if bar else None)
        finally:
            if bar is not None:
                bar.close()
        for result in results:
            if result.error is not None:
                result.error = replicas.scrub(result.error)
        return results

    async def _served_models(self) -> list[str]:
        async with self._client() as client:
            replicas = self._replicas()
            replicas.try_all_if_out()
            return await self._list_models(client, replicas, self._batch_deadline())

    async def _list_models(self, client: httpx.AsyncClient, replicas: Replicas, deadline: float | None) -> list[str]:
        """The model ids the replicas agree on (`_agreed_models`)."""
        return [served.id for served in await self._agreed_models(client, replicas, deadline)]

    async def _agreed_models(self, client, replicas: Replicas, deadline: float | None) -> tuple[ServedModel, ...]:
        """The live replicas' ``/v1/models`` at once, each within
        ``discovery_timeout`` (and the deadline): the answer most replicas give (the first one's on a tie); a
        replica that answers otherwise serves another judge and is taken out, with the reason logged. Discovery
        is a health probe: one that does not answer is held out (while another did) until a probe passes
        (`Replicas.probed`); one taken out is not asked (the probes bring it back). `RequestFailed` when none
        answers."""
        asked = replicas.live()
        found = await asyncio.gather(*(self._models_of(client, r, replicas, deadline) for r in asked))
        answers = [(replica, models) for replica, models in zip(asked, found) if not isinstance(models, str)]
        if not answers:
            raise RequestFailed("; ".join(found))
        signatures = [models for _, models in answers]
        agreed = max(signatures, key=signatures.count)  # max keeps the first of equals
        reference = next(replica for replica, models in answers if models == agreed)
        for replica, models in zip(asked, found):
            if isinstance(models, str):
                replicas.probed(replica, models, misses=1)  # not seen alive in this call: no item before a probe passes
            elif models != agreed:
                reason = f"serves another judge: {describe(models)}, where {reference.name} serves {describe(agreed)}"
                replicas.probed(replica, reason, force=True)
            else:
                replicas.probed(replica, None)
        return agreed

    async def _models_of(self, client, replica: Replica, replicas: Replicas, deadline) -> tuple[ServedModel, ...] | str:
        """One replica's ``/v1/models`` (one attempt), or why it could not be read."""
        url = f"{replica.name}/v1/models"
        limit, by_deadline = attempt_limit(min(self.timeout, self.discovery_timeout), deadline)
        get = exchange(client, "GET", f"{replica.url}/v1/models", self.max_response_bytes, headers=self._headers)
        try:
            answer = await asyncio.wait_for(get, limit)
            if not answer.is_success:
                return f"cannot list models at {url}: HTTP {answer.status}"
            return tuple(ServedModel.from_entry(entry) for entry in answer.json()["data"])
        except asyncio.TimeoutError:
            if by_deadline:
                return f"cannot list models at {url}: deadline exceeded ({self.deadline:g}s)"
            return f"cannot list models at {url}: timed out (no full answer within {limit:g}s)"
        except (httpx.HTTPError, RequestFailed) as exc:
            return replicas.scrub(f"cannot list models at {url}: {type(exc).__name__}: {exc}")
        except (ValueError, KeyError, TypeError) as exc:
            return replicas.scrub(f"cannot list models at {url}: unexpected answer ({exc!r})")

    async def _resolve_model(
        self, client: httpx.AsyncClient, replicas: Replicas, deadline: float | None
    ) -> tuple[str | None, tuple[ServedModel, ...] | None]:
        """The model name to send: the given one, else the servers' only (or "UnifiedReward") model; and the
        judge the replicas agreed on (``None`` when discovery did not run or failed).

        With several replicas, discovery reads the live ones at every call (it checks that they serve the same judge:
        `_agreed_models`); with one, only when no model was given, once (the answer is cached). It runs
        within the call's deadline. ``None`` (no ``model`` field) when it fails or lists nothing: a
        single-model server (``transformers serve MODEL``) then answers with its pinned model, and an
        unreachable server fails per item with the retry policy's reason.
        """
        if self.model is not None and len(replicas) == 1:
            return self.model, None
        try:
            judge = await self._agreed_models(client, replicas, deadline)
        except RequestFailed as exc:
            if self.model is None:
                logger.warning("%s; sending requests without a model name", exc)
            return self.model, None
        served = [model.id for model in judge]
        if self.model is None and (len(served) == 1 or "UnifiedReward" in served):
            self.model = served[0] if len(served) == 1 else "UnifiedReward"
            logger.info("using served model %r", self.model)
        elif self.model is None and served:
            raise ValueError(f"{redact_url(self.base_url)} serves several models {served}; pass model=...")
        return self.model, judge

    def _media_parts(self, request: BackendRequest) -> list[dict[str, Any]]:
        return media_parts(request.media, self.image_format, self.jpeg_quality, self.video_mode, self.frames_per_video)

    def _payload(
        self,
        parts: list[dict[str, Any]],
        text: str,
        model: str | None,
        prefill: str | None,
        max_tokens: int,
        token_ids: dict[str, int] | None = None,
    ) -> dict[str, Any]:
        """A chat request; with a ``prefill`` it asks for the first token's log-probabilities
        (of exactly ``token_ids`` when given, as ``token_id:N`` tokens, else the top 20)."""
        payload: dict[str, Any] = {"messages": chat_messages(parts, text, prefill)}
        if model is not None:
            payload["model"] = model
        payload.update(self.sampling, max_tokens=max_tokens)
        if prefill is not None:
            payload.update(continue_final_message=True, add_generation_prompt=False, logprobs=True)
            if token_ids is None:
                payload["top_logprobs"] = TOP_LOGPROBS
            else:
                payload.update(logprob_token_ids=sorted(token_ids.values()), return_tokens_as_token_ids=True)
        payload.update(self.extra_body)
        return payload

    async def _first_token_logprobs(
        self, client, replicas: Replicas, payload: dict, token_ids: dict[str, int] | None, deadline
    ) -> dict[str, float]:
        try:
            body = await self._post(client, replicas, CHAT_PATH, payload, deadline)
        except RequestFailed as exc:
            if is_feature_refusal(exc):
                raise RequestFailed(f"{LOGIT_UNSUPPORTED} ({exc})", exc.status) from None
            raise
        try:
            if token_ids is None:
                return first_token_logprobs(body)
            return token_id_logprobs(body, token_ids)
        except ValueError as exc:
            raise RequestFailed(f"{LOGIT_UNSUPPORTED}: {exc}") from None

    # ----- exact candidate token ids -----------------------------------------------------------

    async def _candidate_ids(self, client, replicas, model, prefix, candidates, nodes, deadline):
        """``{node: {next character: token id}}`` for ``prefix`` and ``candidates`` (see `_cached_ids`)."""
        return await self._cached_ids(
            (prefix, tuple(candidates)),
            lambda: self._resolve_ids(client, replicas, model, prefix, candidates, nodes, deadline),
        )

    async def _cached_ids(self, key, resolve):
        """The exact token ids ``resolve()`` gives, cached per ``key``; ``None`` to read the top 20 (the
        server refused, "auto" mode); a string when the ids cannot be had now (the items fail with it).
        Only ids are cached, never a failure."""
        if self.logprob_tokens == "top":
            return None
        if key not in self._token_ids:
            try:
                self._token_ids[key] = await resolve()
            except (RequestFailed, ValueError) as exc:
                reason = f"cannot resolve the candidate token ids: {exc}"
                if isinstance(exc, RequestFailed) and not is_feature_refusal(exc):
                    return reason  # down, overloaded or the wrong server: no verdict on the features
                if self.logprob_tokens == "exact":
                    return f"{LOGIT_UNSUPPORTED} with exact token ids ({reason})"
                logger.warning("%s; logit mode reads the top-%d tokens for this call", reason, TOP_LOGPROBS)
                return None  # not cached: the next call asks again (a fixed or replaced replica recovers)
        return self._token_ids[key]

    async def _symbol_ids(self, client, replicas, model, prefix, nodes, deadline) -> dict[str, int]:
        """The score trie's symbols (digits, ".") as token ids after ``prefix``, one token per character
        (as the in-process tree step requires); checked at the root and on the deepest node."""
        root = await self._tokenize(client, replicas, model, answer_text(prefix, ""), deadline)
        ids = {}
        for symbol in SYMBOLS:
            full = await self._tokenize(client, replicas, model, answer_text(prefix, symbol), deadline)
            if len(full) != len(root) + 1 or full[: len(root)] != root:
                raise ValueError(f"{answer_text(prefix, symbol)!r} is not {answer_text(prefix, '')!r} + one token")
            ids[symbol] = full[-1]
        deepest = max(nodes, key=len)
        if deepest and await self._tokenize(client, replicas, model, answer_text(prefix, deepest), deadline) != [
            *root, *(ids[c] for c in deepest)
        ]:
            raise ValueError(f"the tokenizer does not write {deepest!r} one token per character after {prefix!r}")
        return ids

    async def _resolve_ids(self, client, replicas, model, prefix, candidates, nodes, deadline) -> dict[str, dict[str, int]]:
        """Each trie node's next characters as single token ids, tokenized as the full answer text
        (``prefix + " " + answer``, as the transformers backend reads it)."""
        texts = {answer_text(prefix, node + char) for node in nodes for char in _children(candidates, node)}
        texts |= {answer_text(prefix, node) for node in nodes}
        tokens = {text: await self._tokenize(client, replicas, model, text, deadline) for text in sorted(texts)}
        table: dict[str, dict[str, int]] = {}
        for node in nodes:
            base = tokens[answer_text(prefix, node)]
            table[node] = {}
            for char in _children(candidates, node):
                full = tokens[answer_text(prefix, node + char)]
                if len(full) != len(base) + 1 or full[: len(base)] != base:
                    raise ValueError(f"{answer_text(prefix, node + char)!r} is not {answer_text(prefix, node)!r} + one token")
                table[node][char] = full[-1]
        logger.info("candidate token ids after %r: %s", prefix, table)
        return table

    async def _tokenize(self, client, replicas, model, text: str, deadline) -> list[int]:
        if self.tokenizer is not None:
            if self._local_tokenizer is None:
                from transformers import AutoTokenizer

                self._local_tokenizer = AutoTokenizer.from_pretrained(self.tokenizer)
            return list(self._local_tokenizer(text, add_special_tokens=False)["input_ids"])
        payload = {"prompt": text, "add_special_tokens": False, **({"model": model} if model else {})}
        body = await self._post(client, replicas, "/tokenize", payload, deadline)
        tokens = body.get("tokens") if isinstance(body, dict) else None
        if not isinstance(tokens, list) or not all(isinstance(t, int) for t in tokens):
            raise ValueError(replicas.scrub(f"/tokenize gave no token ids: {str(body)[:200]}"))
        return tokens


CHAT_PATH = "/v1/chat/completions"


@dataclass(frozen=True)
class ServedModel:
    """One ``/v1/models`` entry: what tells two replicas apart (vLLM fills ``root`` with the checkpoint path)."""

    id: str
    root: str | None = None
    max_model_len: int | None = None

    @classmethod
    def from_entry(cls, entry: dict[str, Any]) -> ServedModel:
        return cls(str(entry["id"]), entry.get("root"), entry.get("max_model_len"))


def describe(models: Sequence[ServedModel]) -> str:
    """``id (root, max_model_len N)`` for each model, for a log line."""
    return ", ".join(f"{m.id} ({m.root or 'no root'}, max_model_len {m.max_model_len})" for m in models) or "no model"


def is_feature_refusal(exc: RequestFailed) -> bool:
    """A 4xx that refuses the request's features (logit fields, ``/tokenize``): not 408/429 (busy), not a
    "wrong server" answer (401/403, 404 for the model: `http_client.WRONG_SERVER_STATUS`)."""
    if exc.status is None or not 400 <= exc.status < 500 or exc.status in (408, 429):
        return False
    if exc.status in WRONG_SERVER_STATUS:  # a 404 for a route (no /tokenize) is a refusal; for the model, not
        return exc.status == 404 and "model" not in (exc.body or str(exc)).lower()
    return True


def _children(candidates: list[str], node: str) -> list[str]:
    return sorted({c[len(node)] for c in candidates if len(c) > len(node) and c.startswith(node)})


def prefill_nodes(candidates: list[str]) -> list[str]:
    """Answer texts whose next-token distribution the candidates need: every proper prefix, by character.

    One node ("") for single-character answers ("1"/"2", "1".."5"); "1" as well on a 1-10 scale.
    """
    if len(set(candidates)) != len(candidates) or len(candidates) < 2:
        raise ValueError(f"need at least two distinct candidates, got {candidates}")
    nodes = {c[:i] for c in candidates for i in range(len(c))}
    return sorted(nodes, key=lambda n: (len(n), n))


def candidate_logprobs(candidates: list[str], distributions: dict[str, dict[str, float]]) -> dict[str, float]:
    """Chain the per-node top-k log-probabilities into one log-probability per candidate.

    A candidate that is a prefix of a longer one ("1" vs "10") also needs the probability of stopping
    there: ``1 - sum(P(next character of a longer candidate))``. Anything outside the top-k counts as 0.
    """
    result = {}
    for candidate in candidates:
        total = 0.0
        for i, char in enumerate(candidate):
            total += distributions[candidate[:i]].get(char, -math.inf)
        if candidate in distributions:
            continuing = {d[len(candidate)] for d in candidates if len(d) > len(candidate) and d.startswith(candidate)}
            stay = 1.0 - sum(math.exp(distributions[candidate].get(ch, -math.inf)) for ch in continuing)
            total += math.log(stay) if stay > 0 else -math.inf
        result[candidate] = total
    return result
