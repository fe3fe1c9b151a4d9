"""OpenAI-compatible HTTP backend: against a real ``transformers serve`` of the toy reward model, plus a
stub server only where noted (vLLM's logprobs answers, which ``transformers serve`` cannot give)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import math
import os
from pathlib import Path

import pytest
from PIL import Image

from reward_core.backends.base import BackendRequest
from reward_core.backends.openai_backend import OpenAIBackend, candidate_logprobs, prefill_nodes
from reward_core.backends.openai_messages import first_token_logprobs
from reward_core.media import VideoSpec
from reward_core.model import JudgeItem, UnifiedReward
from reward_core.results import Status
from servers import StubServer, chat_response, vllm_logprobs_response

os.environ.setdefault("OMP_NUM_THREADS", "1")

PAIR = "image_generation.pair_rank.v1"


def rows(toy_world, name: str, count: int) -> list[dict]:
    lines = Path(toy_world["data"][name]).read_text().splitlines()[:count]
    return [json.loads(line) for line in lines]


def media_path(toy_world, relative: str) -> str:
    return str(Path(toy_world["data_dir"]) / relative)


def pair_items(toy_world, count: int) -> list[JudgeItem]:
    return [
        JudgeItem(media=[media_path(toy_world, p) for p in row["images"]], fields={"prompt": row["prompt"]})
        for row in rows(toy_world, "image_pairs", count)
    ]


def decode_data_url(url: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


# ----- real server: transformers serve ------------------------------------------------------------


def test_http_parse_results_match_transformers_backend(toy_server, toy_world):
    """Same template, same images (lossless PNG), greedy: the server and the in-process model agree."""
    items = pair_items(toy_world, 3)
    local = UnifiedReward.from_pretrained(toy_world["reward_model"], device="cpu", dtype="float32", batch_size=1)
    remote = UnifiedReward.from_server(toy_server.base_url, image_format="png", timeout=60)
    expected = local.compare_batch(PAIR, items, max_new_tokens=12)
    got = remote.compare_batch(PAIR, items, max_new_tokens=12)
    for want, have in zip(expected, got):
        assert have.status == want.status and have.winner == want.winner and have.score == want.score
        assert have.text.strip() == want.text.strip()  # transformers serve strips the answer's outer whitespace


def test_order_kept_and_bad_media_fail_alone(toy_server, toy_world, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    good = Image.open(media_path(toy_world, rows(toy_world, "image_points", 1)[0]["image"])).convert("RGB")
    requests = [BackendRequest(media=[good], text=f"Describe image number {i}.") for i in range(4)]
    requests.insert(2, BackendRequest(media=[VideoSpec(str(broken), as_frames=True)], text="Rate this video."))
    backend = OpenAIBackend(toy_server.base_url, concurrency=3, timeout=60)
    out = backend.generate(requests, max_new_tokens=6)
    assert [g.error is None for g in out] == [True, True, False, True, True]
    assert out[2].error.startswith("media error:") and "broken.mp4" in out[2].error
    single = [backend.generate([r], max_new_tokens=6)[0].text for r in requests[:2]]
    assert [out[0].text, out[1].text] == single  # input order kept under concurrency


def test_bad_media_through_the_model_is_a_media_error(toy_server, toy_world, tmp_path):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG not really")
    items = pair_items(toy_world, 2)
    items.insert(1, JudgeItem(media=[str(corrupt), items[0].media[1]], fields={"prompt": "a red circle"}))
    results = UnifiedReward.from_server(toy_server.base_url, timeout=60).compare_batch(PAIR, items, max_new_tokens=4)
    assert results[1].status is Status.MEDIA_ERROR and "corrupt.png" in results[1].error
    assert results[0].status is not Status.MEDIA_ERROR and results[0].text is not None
    assert results[2].status is not Status.MEDIA_ERROR and results[2].text is not None


def test_logit_mode_refused_by_transformers_serve_is_a_clear_error(toy_server, toy_world):
    image = Image.open(media_path(toy_world, rows(toy_world, "image_points", 1)[0]["image"]))
    request = BackendRequest(media=[image], text="Rate it.", answer_prefix="Final Score:")
    [answer] = OpenAIBackend(toy_server.base_url, timeout=60).answer_logprobs([request], ["1", "2", "3", "4", "5"])
    assert answer.logprobs == {} and "logit mode is not supported by this server" in answer.error


def test_sync_facade_works_inside_a_running_event_loop(toy_server):
    backend = OpenAIBackend(toy_server.base_url, timeout=60)
    request = BackendRequest(media=[Image.new("RGB", (56, 56), "red")], text="What colour?")

    async def notebook_cell():  # e.g. Jupyter: a loop is already running in this thread
        return backend.generate([request], max_new_tokens=4)

    [inside] = asyncio.run(notebook_cell())
    [outside] = backend.generate([request], max_new_tokens=4)
    assert inside.error is None and inside.text == outside.text


# ----- payloads (stub server records what the client sends) --------------------------------------


def test_payload_sends_explicit_greedy_sampling_and_jpeg_images():
    with StubServer(lambda path, body: (200, chat_response("Image 1 is better."))) as stub:
        image = Image.new("RGB", (40, 30), (250, 0, 0))
        [out] = OpenAIBackend(stub.base_url).generate([BackendRequest(media=[image, image], text="Which?")], 77)
    assert out.text == "Image 1 is better."
    [body] = stub.received
    assert body["model"] == "UnifiedReward"  # discovered from /v1/models
    assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0.0, 1.0, 77)
    [message] = body["messages"]
    assert [part["type"] for part in message["content"]] == ["image_url", "image_url", "text"]
    url = message["content"][0]["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,") and decode_data_url(url).size == (40, 30)
    assert message["content"][-1]["text"] == "Which?"


def test_png_images_and_video_modes(toy_world):
    video = media_path(toy_world, rows(toy_world, "video_pairs", 1)[0]["videos"][0])
    image = Image.new("RGB", (28, 28), (1, 2, 3))
    with StubServer(lambda path, body: (200, chat_response("ok")), models=["a", "UnifiedReward"]) as stub:
        OpenAIBackend(stub.base_url, image_format="png").generate([BackendRequest([image, VideoSpec(video)], "t")], 5)
        OpenAIBackend(stub.base_url, video_mode="video_url").generate([BackendRequest([VideoSpec(video)], "t")], 5)
    frames_body, video_body = stub.received
    parts = frames_body["messages"][0]["content"]
    assert len(parts) == 1 + 8 + 1  # an image, a video as 8 frames-as-images, the text
    assert all(p["image_url"]["url"].startswith("data:image/png;base64,") for p in parts[:-1])
    assert decode_data_url(parts[0]["image_url"]["url"]).getpixel((0, 0)) == (1, 2, 3)  # lossless
    assert video_body["messages"][0]["content"][0]["video_url"]["url"].startswith("data:video/mp4;base64,")
    assert frames_body["model"] == "UnifiedReward"


def test_several_served_models_need_an_explicit_name():
    with StubServer(lambda path, body: (200, chat_response("ok")), models=["a", "b"]) as stub:
        with pytest.raises(ValueError, match="pass model="):
            OpenAIBackend(stub.base_url).generate([BackendRequest([], "t")], 5)
        [out] = OpenAIBackend(stub.base_url + "/v1/", model="b").generate([BackendRequest([], "t")], 5)
    assert out.text == "ok" and stub.received[-1]["model"] == "b"


# ----- logit mode on vLLM-shaped answers (stub: hand-written in vLLM's documented shape) -----------


def test_logit_mode_request_and_vllm_shaped_answer():
    """STUB, not a live vLLM: the answer is written in vLLM's documented logprobs shape."""
    top = {"1": math.log(0.6), "Ġ2": math.log(0.3), " 2": math.log(0.05), "The": math.log(0.05)}
    with StubServer(lambda path, body: (200, vllm_logprobs_response(top))) as stub:
        request = BackendRequest(media=[Image.new("RGB", (28, 28))], text="Which?", answer_prefix="Image")
        [answer] = OpenAIBackend(stub.base_url, logprob_tokens="top").answer_logprobs([request], ["1", "2"])
    assert answer.error is None
    assert answer.logprobs["1"] == pytest.approx(math.log(0.6))
    assert answer.logprobs["2"] == pytest.approx(math.log(0.35))  # "Ġ2" and " 2" merged
    [body] = stub.received
    assert body["messages"][-1] == {"role": "assistant", "content": "Image "}
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
    assert (body["max_tokens"], body["logprobs"], body["top_logprobs"], body["temperature"]) == (1, True, 20, 0.0)


def test_logit_mode_ten_point_scale_reads_two_distributions():
    """STUB (vLLM's documented shape): "1" vs "10" needs the distribution after "Final Score: 1" too."""
    root = {str(d): math.log(0.1) for d in range(1, 10)}
    after_one = {"0": math.log(0.25), ".": math.log(0.7)}

    def respond(path, body):
        prefill = body["messages"][-1]["content"]
        return 200, vllm_logprobs_response(after_one if prefill.endswith("1") else root)

    with StubServer(respond) as stub:
        request = BackendRequest(media=[], text="Rate 1-10.", answer_prefix="Final Score:")
        candidates = [str(v) for v in range(1, 11)]
        [answer] = OpenAIBackend(stub.base_url, logprob_tokens="top").answer_logprobs([request], candidates)
    assert sorted(b["messages"][-1]["content"] for b in stub.received) == ["Final Score: ", "Final Score: 1"]
    assert answer.logprobs["10"] == pytest.approx(math.log(0.1 * 0.25))
    assert answer.logprobs["1"] == pytest.approx(math.log(0.1 * 0.75))  # stops after "1"
    assert answer.logprobs["5"] == pytest.approx(math.log(0.1))


def test_logit_mode_missing_candidates():
    """STUB (vLLM's documented shape): absent from the top-k -> -inf; none present -> an error."""
    with StubServer(lambda path, body: (200, vllm_logprobs_response({"3": -0.1, "x": -3.0}))) as stub:
        request = BackendRequest(media=[], text="Rate.", answer_prefix="Final Score:")
        [partial] = OpenAIBackend(stub.base_url).answer_logprobs([request], ["1", "2", "3"])
        [none] = OpenAIBackend(stub.base_url).answer_logprobs([request], ["4", "5"])
    assert partial.logprobs == {"1": -math.inf, "2": -math.inf, "3": -0.1}
    assert none.error is not None and "no candidate" in none.error


def test_logit_mode_server_without_logprobs_is_not_a_silent_fallback():
    """STUB: a server that answers 200 but ignores ``logprobs``."""
    with StubServer(lambda path, body: (200, chat_response("1"))) as stub:
        request = BackendRequest(media=[], text="Rate.", answer_prefix="Final Score:")
        [answer] = OpenAIBackend(stub.base_url).answer_logprobs([request], ["1", "2"])
    assert answer.logprobs == {} and "logit mode is not supported by this server" in answer.error


def test_trie_helpers():
    assert prefill_nodes(["1", "2"]) == [""]
    assert prefill_nodes([str(v) for v in range(0, 101)]) == ["", *map(str, range(1, 10)), "10"]
    with pytest.raises(ValueError):
        prefill_nodes(["1", "1"])
    logprobs = candidate_logprobs(["1", "2"], {"": {"1": -0.5}})
    assert logprobs == {"1": -0.5, "2": -math.inf}
    with pytest.raises(ValueError, match="no logprobs"):
        first_token_logprobs({"choices": [{"message": {"content": "1"}}]})


# ----- serve-cmd -------------------------------------------------------------------------------------


def test_serve_cmd_uses_replicas_for_small_judges(capsys):
    from unifiedreward.cli.serve_cmd import main, params_from_name, plan

    assert main(["CodeGoat24/UnifiedReward-2.0-qwen3vl-8b", "--gpus", "8"]) == 0
    command = capsys.readouterr().out
    for flag in ("--served-model-name UnifiedReward", "--tensor-parallel-size 1", "--data-parallel-size 8",
                 "--max-model-len 16384", "--enable-prefix-caching", """'{"image": 32, "video": 0}'"""):  # fmt: skip
        assert flag in command
    assert (plan("UnifiedReward-2.0-qwen3vl-32b", 8).tp, plan("UnifiedReward-2.0-qwen3vl-32b", 8).dp) == (2, 4)
    assert params_from_name("CodeGoat24/UnifiedReward-7b-v1.5") == 7.0
    assert main(["CodeGoat24/UnifiedReward-7b-v1.5", "--engine", "sglang", "--gpus", "2"]) == 0
    sglang = capsys.readouterr().out
    assert "sglang.launch_server" in sglang and "--dp-size 2" in sglang and "--chat-template chatml-llava" in sglang
    assert main(["CodeGoat24/UnifiedReward-Think-qwen35-9b"]) == 0
    assert "enable_thinking" in capsys.readouterr().out
