"""`unifiedreward serve` (unifiedreward/service) on the toy judge: the real CLI as a subprocess and the app under a
real uvicorn server in a thread; every route's rewards against direct `UnifiedReward` calls on the same items."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import pickle
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import uvicorn

from reward_core import JudgeItem, UnifiedReward
from reward_core.pairing import Pairing, score_pairs
from reward_core.prompts import get_template
from unifiedreward.cli.serve import bind
from unifiedreward.service.app import create_app
from unifiedreward.service.config import ServiceConfig

REPO = Path(__file__).resolve().parents[1]
POINT = "image_generation.point_score.v1"
PAIR = "image_generation.pair_rank.v1"


@pytest.fixture(scope="module")
def judge(toy_world):
    return UnifiedReward.from_pretrained(toy_world["reward_model"])


@pytest.fixture(scope="module")
def images(toy_world) -> list[bytes]:
    folder = Path(toy_world["data_dir"], "image_pairs")
    return [(folder / name).read_bytes() for name in ("00000_1.png", "00000_2.png", "00001_1.png", "00001_2.png")]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@contextlib.contextmanager
def serving(judge, **settings):
    """The app under a real uvicorn server on a free 127.0.0.1 port, in a thread; yields its base URL."""
    config = ServiceConfig(**settings)
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(create_app(judge, config), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_for(lambda: server.started or not thread.is_alive())
    assert server.started, "the server did not start"
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


class SlowBackend:
    """Stands in for a slow GPU: the toy judge's real backend, every call delayed by ``delay`` seconds."""

    def __init__(self, inner, delay: float):
        self.inner, self.delay, self.calls = inner, delay, 0

    def _slow(self, method: str, *args):
        self.calls += 1
        time.sleep(self.delay)
        return getattr(self.inner, method)(*args)

    def generate(self, requests, max_new_tokens):
        return self._slow("generate", requests, max_new_tokens)

    def answer_logprobs(self, requests, candidates):
        return self._slow("answer_logprobs", requests, candidates)

    def answer_node_probs(self, requests, nodes):
        return self._slow("answer_node_probs", requests, nodes)


def slow_judge(judge, delay: float) -> UnifiedReward:
    return UnifiedReward(SlowBackend(judge.backend, delay), checkpoint=judge.checkpoint)


def metric(text: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


def wait_for(condition, timeout: float = 30.0) -> None:
    stop = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < stop, "condition not reached"
        time.sleep(0.02)


# --- parity: each route against direct judge calls (logit mode: exact) -------------------------------------------


def test_routes_equal_direct_judge_calls(judge, images, tmp_path):
    prompts = ["a red circle", "a blue square", "a green triangle"]
    items = [JudgeItem(media=[image], fields={"prompt": p}) for image, p in zip(images, prompts)]
    direct = [r.to_dict() for r in judge.score_batch(POINT, items, mode="logit")]
    pairs = [JudgeItem(media=[images[0], images[1]], fields={"prompt": prompts[0]}),
             JudgeItem(media=[images[2], images[3]], fields={"prompt": prompts[1]})]
    direct_pairs = [r.to_dict() for r in judge.compare_batch(PAIR, pairs, swap=True, mode="logit")]
    (tmp_path / "x.png").write_bytes(images[2])
    with serving(judge, mode="logit", media_root=str(tmp_path)) as url:
        rows = [{"media": [b64(images[0])], "fields": {"prompt": prompts[0]}, "id": "a"},
                {"media": {"base64": b64(images[1])}, "fields": {"prompt": prompts[1]}},
                {"media": ["x.png"], "fields": {"prompt": prompts[2]}}]  # a path under --media-root
        score = httpx.post(f"{url}/v1/score", json={"template": POINT, "items": rows}, timeout=120).json()
        assert [{k: v for k, v in r.items() if k != "id"} for r in score["results"]] == direct
        assert score["results"][0]["id"] == "a" and score["failed"] == 0

        compare = httpx.post(f"{url}/v1/compare", json={"template": PAIR, "swap": True, "items": [
            {"media": [b64(images[0]), b64(images[1])], "fields": {"prompt": prompts[0]}},
            {"media": [b64(images[2]), b64(images[3])], "fields": {"prompt": prompts[1]}}]}, timeout=120).json()
        assert [{k: v for k, v in r.items() if k != "id"} for r in compare["results"]] == direct_pairs

        scorer = httpx.post(f"{url}/v1/scorer", json={"images": [b64(i) for i in images[:3]], "prompts": prompts},
                            timeout=120).json()
        assert scorer["scores"] == [r["score"] / 5 for r in direct] == scorer["outputs"]  # score / scale max

        group = httpx.post(f"{url}/v1/group", json={"method": "pointwise", "template": POINT, "fields": {
            "prompt": prompts[0]}, "candidates": [b64(i) for i in images[:2]]}, timeout=120).json()
        one_prompt = judge.score_batch(POINT, [JudgeItem([i], {"prompt": prompts[0]}) for i in images[:2]], mode="logit")
        assert group["rewards"] == [r.score / 5 for r in one_prompt]


def test_group_win_rate_over_all_pairs(judge, images):
    """``pairing="pref_grpo", aggregate="win_rate"``: every pair once, lower index first, P(win) averaged."""
    prompt = {"prompt": "a red circle"}
    with serving(judge, mode="logit") as url:
        request = {"method": "winrate", "fields": prompt, "pairing": "pref_grpo", "aggregate": "win_rate",
                   "candidates": [b64(i) for i in images[:3]]}
        answer = httpx.post(f"{url}/v1/group", json=request, timeout=120).json()
    pairs = [tuple(c["pair"]) for c in answer["comparisons"]]
    assert sorted(pairs) == [(0, 1), (0, 2), (1, 2)]  # every pair once, the lower index first
    direct = judge.compare_batch(PAIR, [JudgeItem([images[a], images[b]], prompt) for a, b in pairs], mode="logit")
    wins = [0.0, 0.0, 0.0]
    for (a, b), result in zip(pairs, direct):
        wins[a] += result.probs["1"]
        wins[b] += result.probs["2"]
    assert answer["rewards"] == pytest.approx([w / 2 for w in wins], abs=1e-12)


def test_group_default_pairing_is_the_trainers_sparse_bradley_terry(judge, images):
    """Logit mode's default (as TRL / Flow-GRPO): sparse k=4 pairs, first slot balanced, a Bradley-Terry fit; the
    rewards equal the fit of direct judge calls on the same ordered pairs; a repeated request gets the same pairs."""
    prompt = {"prompt": "a red circle"}
    candidates = [b64(image) for image in images[:4]] * 2  # a group of 8
    media = images[:4] * 2
    with serving(judge, mode="logit") as url:
        request = {"method": "winrate", "fields": prompt, "candidates": candidates}
        answer = httpx.post(f"{url}/v1/group", json=request, timeout=120).json()
        again = httpx.post(f"{url}/v1/group", json=request, timeout=120).json()
    pairs = [tuple(c["pair"]) for c in answer["comparisons"]]
    assert answer["pairing"]["schedule"] == "sparse" and answer["pairing"]["aggregate"] == "bt"
    assert len(pairs) == 8 * 4 // 2 and [tuple(c["pair"]) for c in again["comparisons"]] == pairs
    assert all(sum(p.count(i) for p in pairs) == 4 for i in range(8))  # each candidate meets 4 others
    direct = judge.compare_batch(PAIR, [JudgeItem([media[a], media[b]], prompt) for a, b in pairs], mode="logit")
    pairing = Pairing.for_mode("logit")
    rewards, _ = score_pairs(8, [list(range(8))], pairs, [r.probs["1"] for r in direct], pairing)
    assert answer["rewards"] == pytest.approx(rewards, abs=1e-9)
    assert answer["position_bias"] is not None and 0.0 <= answer["consistency"] <= 1.0


def test_group_of_text_answers(judge, images):
    """Understanding: one image, several answers -> pointwise scores and win rates, as direct calls."""
    answers, question = ["A red circle.", "A blue square.", "Nothing."], "What is shown?"
    point = judge.score_batch("image_understanding.point_score.v1", [
        JudgeItem([images[0]], {"question": question, "response": a}) for a in answers], mode="logit")
    request = {"media": [b64(images[0])], "fields": {"question": question}, "answers": answers}
    with serving(judge, mode="logit") as url:
        pointwise = httpx.post(f"{url}/v1/group", json={**request, "method": "pointwise"}, timeout=120).json()
        winrate = httpx.post(f"{url}/v1/group", json={**request, "method": "winrate"}, timeout=120).json()
        broken = httpx.post(f"{url}/v1/group", json={**request, "media": ["@@"]}, timeout=120).json()
    pairs = judge.compare_batch("image_understanding.pair_rank.v1", [
        JudgeItem([images[0]], {"question": question, "answer1": answers[a], "answer2": answers[b]})
        for a, b in (c["pair"] for c in winrate["comparisons"])], mode="logit")
    assert pointwise["rewards"] == [r.score / 100 for r in point]
    assert [c["probs"] for c in winrate["comparisons"]] == [r.probs for r in pairs]
    assert broken["rewards"] == [None] * 3 and broken["results"][0]["status"] == "media_error"


def test_get_reward_scores_the_completion(judge, images):
    """OpenRLHF's request: the label carries the image and question; the completion is the query after its prompt."""
    prompt = "<|im_start|>user\nWhat is shown?<|im_end|>\n<|im_start|>assistant\n"
    queries = [prompt + "A red circle.<|im_end|>", prompt + "Nothing at all.<|im_end|><|endoftext|>"]
    labels = [json.dumps({"image": b64(images[0]), "question": "What is shown?"})] * 2
    direct = judge.score_batch("image_understanding.point_score.v1", [
        JudgeItem([images[0]], {"question": "What is shown?", "response": text})
        for text in ("A red circle.", "Nothing at all.")], mode="logit")
    with serving(judge, mode="logit") as url:
        answer = httpx.post(f"{url}/get_reward", json={"query": queries, "prompts": [prompt] * 2, "labels": labels},
                            timeout=120).json()
    assert answer["rewards"] == answer["scores"] == [r.score / 100 for r in direct]
    assert answer["extra_logs"]["raw_score"] == [r.score for r in direct]


# --- the real CLI: batching, order, key --------------------------------------------------------------------------


def test_cli_batches_concurrent_requests_and_keeps_each_order(judge, images, toy_world):
    """`unifiedreward serve` as a subprocess: 8 concurrent requests of 2 items (in different orders) are judged in
    fewer judge calls than requests (the batch-size histogram), each request's results in its own order."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "UNIFIEDREWARD_SERVICE_API_KEY": "test-key", "OMP_NUM_THREADS": "2"}
    command = [sys.executable, "-m", "unifiedreward.cli", "serve", "--model", toy_world["reward_model"], "--device",
               "cpu", "--mode", "logit", "--port", "0", "--max-wait-ms", "500", "--max-batch", "16"]
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    try:
        url = None
        for line in process.stderr:
            found = re.search(r"on (http://127\.0\.0\.1:\d+)", line)
            if found:
                url = found.group(1)
                break
        assert url, "no startup line"
        wait_for(lambda: _healthy(url), timeout=60)
        assert httpx.get(f"{url}/health").json()["workers"] == 1  # an in-process judge: one call at a time
        key = {"Authorization": "Bearer test-key"}
        assert httpx.post(f"{url}/v1/score", json={"items": []}).status_code == 401
        assert httpx.post(f"{url}/v1/score", json={"items": []}, headers={"Authorization": "Bearer nope"}).status_code == 401
        assert httpx.get(f"{url}/metrics").status_code == 401

        prompts = ["a red circle", "a blue square"]
        orders = [[(i + j) % 4 for j in range(2)] for i in range(8)]
        singles = {i: judge.score_batch(POINT, [JudgeItem([images[i]], {"prompt": prompts[i % 2]})], mode="logit")[0].score
                   for i in range(4)}

        def send(order):
            rows = [{"media": [b64(images[i])], "fields": {"prompt": prompts[i % 2]}} for i in order]
            return httpx.post(f"{url}/v1/score", json={"template": POINT, "items": rows}, headers=key, timeout=120)

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(send, orders))
        for order, answer in zip(orders, answers):
            assert answer.status_code == 200
            assert [r["score"] for r in answer.json()["results"]] == pytest.approx([singles[i] for i in order], abs=1e-4)
        text = httpx.get(f"{url}/metrics", headers=key).text
        calls, items = metric(text, "unifiedreward_batch_size_count"), metric(text, "unifiedreward_batch_size_sum")
        assert items == 16 and calls < len(orders), text
        assert metric(text, 'unifiedreward_requests_total{code="200",route="/v1/score"}') == 8
        assert metric(text, 'unifiedreward_requests_total{code="401",route="/v1/score"}') == 2
    finally:
        process.terminate()
        process.wait(timeout=30)


def _healthy(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"{url}/health", timeout=2).json()["ok"]
    return False


# --- overload, deadline, limits ------------------------------------------------------------------------------------


def test_full_queue_answers_429_with_retry_after(judge, images):
    slow = slow_judge(judge, delay=1.0)
    row = {"media": [b64(images[0])], "fields": {"prompt": "a red circle"}}
    with serving(slow, mode="logit", max_queue=2, max_batch=1, max_wait_ms=0) as url, ThreadPoolExecutor(2) as pool:
        running = pool.submit(httpx.post, f"{url}/v1/score", json={"items": [row]}, timeout=60)
        wait_for(lambda: httpx.get(f"{url}/health").json()["running"] == 1)
        queued = pool.submit(httpx.post, f"{url}/v1/score", json={"items": [row, row]}, timeout=60)
        wait_for(lambda: httpx.get(f"{url}/health").json()["queue_depth"] == 2)
        refused = httpx.post(f"{url}/v1/score", json={"items": [row]}, timeout=60)
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
        assert "queue is full" in refused.json()["error"]
        assert running.result().status_code == queued.result().status_code == 200
        assert all(r["status"] == "ok" for r in queued.result().json()["results"])


def test_deadline_fails_items_and_never_runs_expired_ones(judge, images):
    slow = slow_judge(judge, delay=2.0)
    row = {"media": [b64(images[0])], "fields": {"prompt": "a red circle"}}
    with serving(slow, mode="logit", max_batch=1, max_wait_ms=0, request_deadline_s=0.5) as url, \
            ThreadPoolExecutor(2) as pool:
        started = time.monotonic()
        answers = list(pool.map(lambda _: httpx.post(f"{url}/v1/score", json={"items": [row]}, timeout=60), range(2)))
        elapsed = time.monotonic() - started
        wait_for(lambda: httpx.get(f"{url}/health").json()["running"] == 0)
    assert elapsed < 1.8  # answered at the deadline, not after the 2 s judge call
    for answer in answers:
        (result,) = answer.json()["results"]
        assert result["status"] == "backend_error" and result["error"].startswith("deadline exceeded")
    assert slow.backend.calls == 1  # the request queued behind the first one was never run


def test_body_and_media_limits_answer_413(judge, images):
    with serving(judge, max_body_bytes=4096, max_media_per_request=2) as url:
        big = httpx.post(f"{url}/v1/score", json={"items": [{"media": [b64(images[0])]}]})
        assert big.status_code == 413 and "--max-body-mb" in big.json()["error"]
        many = httpx.post(f"{url}/v1/scorer", json={"images": ["eA=="] * 3, "prompts": ["p"] * 3})
        assert many.status_code == 413 and "--max-media" in many.json()["error"]
    with serving(judge, max_queue=1) as url:  # more items than could ever wait: 413, not a 429 to retry forever
        over = httpx.post(f"{url}/v1/scorer", json={"images": [b64(images[0])] * 2, "prompts": ["p"] * 2})
        assert over.status_code == 413 and "--max-queue" in over.json()["error"]


# --- bad input: per-item errors, the rest judged --------------------------------------------------------------------


def test_bad_media_fail_alone(judge, images, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "secret.png").write_bytes(images[0])
    (root / "link.png").symlink_to(tmp_path / "secret.png")
    bad = {"corrupt base64": "@@not base64@@", "corrupt image": b64(b"\x89PNG not really an image"),
           "outside root": "../secret.png", "symlink out": "link.png", "absolute": str(tmp_path / "secret.png")}
    rows = [{"media": [b64(images[0])], "fields": {"prompt": "a red circle"}}]
    rows += [{"media": [entry], "fields": {"prompt": "a red circle"}} for entry in bad.values()]
    with serving(judge, mode="logit", media_root=str(root)) as url:
        answer = httpx.post(f"{url}/v1/score", json={"items": rows}, timeout=120).json()
        first, *failed = answer["results"]
        assert first["status"] == "ok" and answer["failed"] == len(bad)
        assert [r["status"] for r in failed] == ["media_error"] * len(bad)
        assert "invalid base64" in failed[0]["error"] and "cannot decode image" in failed[1]["error"]
        assert all("outside the media root" in r["error"] for r in failed[2:])

        scorer = httpx.post(f"{url}/v1/scorer", json={"images": [b64(images[0]), "@@", b64(b"junk")],
                                                      "prompts": ["a", "b", "c"]}, timeout=120)
        assert scorer.status_code == 422  # only inputs failed: never a 0 or a worst score for them
        body = scorer.json()
        assert body["scores"][0] > 0 and body["scores"][1:] == [None, None]
        assert [e["index"] for e in body["errors"]] == [1, 2] and "2 of 3 items failed" in body["error"]

        labels = [json.dumps({"image": b64(images[0]), "question": "?"}), json.dumps({"image": "../secret.png"}),
                  "{not json", json.dumps({"question": "no image"})]
        reward = httpx.post(f"{url}/get_reward", json={"query": ["q"] * 4, "prompts": [""] * 4, "labels": labels},
                            timeout=120)
        assert reward.status_code == 422
        assert reward.json()["rewards"][0] > 0 and reward.json()["rewards"][1:] == [None] * 3
        assert [e["error"] for e in reward.json()["errors"]] == [
            "bad item: label media: ../secret.png: refused: the path is outside the media root",
            "bad item: label is not JSON (Expecting property name enclosed in double quotes at 1)",
            "bad item: label has no media: give 'image', 'images' or 'video'"]
    with serving(judge) as url:  # no --media-root: every path is refused
        answer = httpx.post(f"{url}/v1/score", json={"items": [{"media": ["a.png"], "fields": {"prompt": "x"}}]}).json()
        assert "without --media-root" in answer["results"][0]["error"]


def test_pickle_needs_the_flag_and_loopback(judge, images):
    body = pickle.dumps({"images": [images[0]], "prompts": ["a red circle"], "metadata": {}})
    with serving(judge, mode="logit") as url:
        refused = httpx.post(f"{url}/v1/scorer", content=body, headers={"Content-Type": "application/octet-stream"})
        assert refused.status_code == 415 and "--allow-pickle" in refused.json()["error"]
        as_json = httpx.post(f"{url}/v1/scorer", json={"images": [b64(images[0])], "prompts": ["a red circle"]},
                             timeout=120).json()
    with serving(judge, mode="logit", allow_pickle=True) as url:
        for path in ("/v1/scorer", "/"):  # Flow-GRPO's clients post to the root
            answer = httpx.post(f"{url}{path}", content=body, timeout=120)
            assert pickle.loads(answer.content) == {"scores": as_json["scores"], "outputs": as_json["scores"]}
    with pytest.raises(ValueError, match="only allowed when bound to 127.0.0.1"):
        ServiceConfig(host="0.0.0.0", allow_pickle=True)
    result = subprocess.run([sys.executable, "-m", "unifiedreward.cli", "serve", "--model", "unused", "--host",
                             "0.0.0.0", "--allow-pickle"], capture_output=True, text=True, env={
                                 **os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 2 and "--allow-pickle" in result.stderr


def test_health_never_shows_server_credentials():
    from unifiedreward.cli import build_parser
    from unifiedreward.cli.serve import service_config

    args = build_parser(["serve"]).parse_args(["serve", "--server", "http://u:secret@10.0.0.5:8080,http://10.0.0.6:8080"])
    assert service_config(args).model_name == "http://***@10.0.0.5:8080,http://10.0.0.6:8080"


def test_template_of_the_wrong_kind_is_a_400(judge, images):
    with serving(judge) as url:
        answer = httpx.post(f"{url}/v1/score", json={"template": PAIR, "items": [
            {"media": [b64(images[0])], "fields": {"prompt": "x"}}]})
        assert answer.status_code == 400 and "not pointwise" in answer.json()["error"]
        unknown = httpx.post(f"{url}/v1/compare", json={"template": "no.such.template", "items": []})
        assert unknown.status_code == 400


def test_scorer_scale_is_the_adapters():
    assert get_template(POINT).max_scaled(5.0) == 1.0 and get_template("image_understanding.point_score.v1").max_scaled(50) == 0.5


def test_service_over_http_replica_matches_the_client(toy_server, images):
    """`--server`: the judge is a real `transformers serve` of the toy model behind the library's HTTP client; two
    judge calls at once (the default for a backend that queues requests itself); concurrent requests get the texts a
    direct client call gets for the same items."""
    remote = UnifiedReward.from_server(toy_server.base_url, image_format="png", timeout=60, max_new_tokens=6)
    prompts = ["a red circle", "a blue square", "a green triangle"]
    items = [JudgeItem([images[i], images[i + 1]], {"prompt": p}) for i, p in enumerate(prompts)]
    direct = remote.compare_batch(PAIR, items)
    with serving(remote, max_wait_ms=50) as url, ThreadPoolExecutor(3) as pool:
        assert httpx.get(f"{url}/health").json()["workers"] == 2
        answers = list(pool.map(lambda i: httpx.post(f"{url}/v1/compare", json={"items": [{"media": [
            b64(images[i]), b64(images[i + 1])], "fields": {"prompt": prompts[i]}}]}, timeout=120).json(), range(3)))
    for want, answer in zip(direct, answers):
        (have,) = answer["results"]
        assert want.text and (have["status"], have["text"]) == (want.status.value, want.text)


def test_batcher_splits_merges_and_returns_every_item_once():
    """Bookkeeping at a scale the toy judge is too slow for: a stand-in judge whose score is the item's number.
    300 concurrent requests of 1-12 items (more than max_batch: split) each get exactly their own items back, in
    their order, and no judge call holds more than max_batch items."""
    import asyncio
    import random

    from reward_core.results import RewardResult, Status
    from unifiedreward.service.batcher import Batcher, BatchKey

    class NumberJudge:
        checkpoint, sizes = None, []

        def score_batch(self, template, items, mode):
            self.sizes.append(len(items))
            return [RewardResult(Status.OK, score=item.fields["n"]) for item in items]

    async def scenario():
        stand_in = NumberJudge()
        batcher = Batcher(stand_in, max_batch=7, max_wait_s=0.005, max_queue=10_000)
        await batcher.start()
        rng = random.Random(0)
        requests = [[rng.randrange(10**6) for _ in range(rng.randint(1, 12))] for _ in range(300)]
        key = BatchKey("score", POINT, "logit")
        answers = await asyncio.gather(*(batcher.submit(key, [JudgeItem([], {"n": n}) for n in numbers], 30)
                                         for numbers in requests))
        await batcher.stop()
        return requests, answers, stand_in.sizes

    requests, answers, sizes = asyncio.run(scenario())
    assert [[r.score for r in answer] for answer in answers] == requests
    assert sum(sizes) == sum(map(len, requests)) and max(sizes) == 7 and len(sizes) < len(requests)
