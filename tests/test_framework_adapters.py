"""The verl-omni, OpenRLHF and ms-swift adapters: on the toy judge, in the main env, and loaded by each framework's
own code in that framework's environment.

A framework environment is ``.venv-<name>`` in the checkout (``env/make_venv.sh swift|verl``; ``make test`` builds
them) or the interpreter named by ``UNIFIEDREWARD_<NAME>_PYTHON``; without either its test is skipped with that
reason, and fails under ``UNIFIEDREWARD_REQUIRE_FRAMEWORKS=1`` (``make test``). OpenRLHF is in the main environment. Every framework test compares the framework's rewards with a direct ``UnifiedReward`` call on
the same items (logit mode: the toy judge scores every item).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from integrations.neutral_fill import GROUP, MIDPOINT, RECENT, Fill, RunningGroupMeans
from reward_core import JudgeItem, UnifiedReward, get_template
from unifiedreward.reward_labels import decode_label

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "tests" / "scripts"
UND = "image_understanding.point_score.v1"
GEN = "image_generation.point_score.v1"
PAIR = "image_understanding.pair_rank.v1"
TOLERANCE = 1e-4  # framework envs pin other torch / transformers versions than the main env


def framework_python(name: str) -> str:
    """The interpreter of framework ``name``'s environment; skips when there is none."""
    python = os.environ.get(f"UNIFIEDREWARD_{name.upper()}_PYTHON") or REPO / f".venv-{name}" / "bin" / "python"
    if not Path(python).exists():
        if os.environ.get("UNIFIEDREWARD_REQUIRE_FRAMEWORKS") == "1":
            pytest.fail(f"no {name} environment (make test builds .venv-{name}: env/make_venv.sh {name})")
        pytest.skip(f"no {name} environment: .venv-{name} or UNIFIEDREWARD_{name.upper()}_PYTHON (docs/frameworks.md)")
    return str(python)


def run_script(python: str, script: str, *args: str, env: dict | None = None) -> object:
    environ = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", **(env or {})}
    out = subprocess.run([python, str(SCRIPTS / script), *args], env=environ, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def judge(toy_world):
    return UnifiedReward.from_pretrained(toy_world["reward_model"], device="cpu")


def toy_env(toy_world) -> dict:
    return {"UNIFIEDREWARD_MODEL": toy_world["reward_model"], "UNIFIEDREWARD_DEVICE": "cpu", "UNIFIEDREWARD_MODE": "logit"}


@pytest.fixture(scope="module")
def und_rows(toy_world, tmp_path_factory) -> list[dict]:
    """Two prompt rows x two answers each, from the toy world's understanding points."""
    lines = Path(toy_world["data"]["und_points"]).read_text().splitlines()[:2]
    rows = []
    for row in map(json.loads, lines):
        image = str(Path(toy_world["data_dir"]) / row["image"])
        for answer in (row["response"], "I cannot tell."):
            rows.append({"image": image, "question": row["question"], "completion": answer,
                         "label": json.dumps({"image": image, "question": row["question"]})})
    return rows


def direct_und(judge, rows) -> list[float]:
    items = [JudgeItem(media=[r["image"]], fields={"question": r["question"], "response": r["completion"]}) for r in rows]
    return [r.score / 100 for r in judge.score_batch(UND, items, mode="logit")]


def write_rows(tmp_path, rows) -> str:
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(rows))
    return str(path)


# --------------------------------------------------------------------------- shared helpers


def test_running_group_means_fill_from_group_then_recent_then_midpoint():
    fills = RunningGroupMeans(midpoint=0.5, window=2)
    assert fills.fill("a") == Fill(0.5, MIDPOINT)
    fills.record("a", 0.2)
    fills.record("a", 0.4)
    fills.record("b", 1.0)
    assert fills.fill("a").value == pytest.approx(0.3) and fills.fill("a").source == GROUP
    assert fills.fill("c").value == pytest.approx(0.7) and fills.fill("c").source == RECENT  # last 2: 0.4, 1.0


def test_labels_carry_base64_data_urls_and_paths(tmp_path):
    image = tmp_path / "a.png"
    Image.new("RGB", (8, 8), "red").save(image)
    data = base64.b64encode(image.read_bytes()).decode()
    assert decode_label(json.dumps({"image": data, "question": "q"})).media == [image.read_bytes()]
    label = decode_label({"images": [f"data:image/png;base64,{data}", str(image)], "template": UND, "question": "q"})
    assert label.media == [image.read_bytes(), str(image)] and label.template == UND and label.fields == {"question": "q"}
    assert decode_label(json.dumps({"image": "a.png"}), media_root=tmp_path).media == [str(image.resolve())]
    with pytest.raises(ValueError, match="without --media-root"):  # the service's rule: no root, no paths
        decode_label(json.dumps({"image": str(image)}), root_required=True)
    assert decode_label('{"image": "x.png", "q": 1}').key == decode_label('{"image": "x.png", "q": 1}').key
    for bad, reason in [("nope", "not JSON"), ("[1]", "JSON object"), ('{"question": "q"}', "no media"),
                        ('{"image": 3}', "a base64 string, a path"), ('{"video": ["v.mp4"]}', "expected a path")]:
        with pytest.raises(ValueError, match=reason):
            decode_label(bad)
    with pytest.raises(ValueError, match="outside the media root"):
        decode_label(json.dumps({"image": "../a.png"}), media_root=tmp_path / "sub")


# --------------------------------------------------------------------------- verl-omni scorer (main env)


def chw(path: str) -> torch.Tensor:
    return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1).contiguous()


def test_verl_omni_scorer_matches_a_direct_call_and_fails_neutral(toy_world, judge):
    """uint8 CHW in, the template's [0, 1] score out; a parse failure gets its caption's running mean, never 0."""
    from integrations.verl_omni.unified_reward import compute_score_unifiedreward as scorer

    rows = [json.loads(line) for line in Path(toy_world["data"]["image_points"]).read_text().splitlines()[:2]]
    paths = [str(Path(toy_world["data_dir"]) / row["image"]) for row in rows]
    common = {"model_path": toy_world["reward_model"], "device": "cpu"}
    got = [asyncio.run(scorer("toy", chw(p), row["prompt"], {}, mode="logit", **common)) for p, row in zip(paths, rows)]
    items = [JudgeItem(media=[p], fields={"prompt": row["prompt"]}) for p, row in zip(paths, rows)]
    want = [(r.score - 1) / 4 for r in judge.score_batch(GEN, items, mode="logit")]
    assert [g["score"] for g in got] == pytest.approx(want, abs=1e-6)
    assert {g["unifiedreward_failed"] for g in got} == {0.0}

    # the toy judge's generated text is no answer: a parse error, filled from recent scores, then from its caption's
    caption = rows[0]["prompt"] + ", not scored yet"
    generate = {**common, "template": GEN, "max_new_tokens": 4}
    first = asyncio.run(scorer("toy", chw(paths[0]), caption, {}, **generate))
    assert first["unifiedreward_status"] == "parse_error" and first["unifiedreward_fill"] == RECENT
    assert first["score"] == pytest.approx(sum(want) / 2) and first["unifiedreward_failed"] == 1.0
    logit_gen = asyncio.run(scorer("toy", chw(paths[0]), caption, {}, mode="logit", template=GEN, **common))
    filled = asyncio.run(scorer("toy", chw(paths[1]), caption, {}, **generate))
    assert filled["unifiedreward_fill"] == GROUP and filled["score"] == pytest.approx(logit_gen["score"])
    with pytest.raises(RuntimeError, match="parse_error"):
        asyncio.run(scorer("toy", chw(paths[0]), caption, {}, on_failure="raise", **generate))


def test_verl_omni_video_is_one_request_with_the_templates_frames(toy_world, judge, monkeypatch):
    """A TCHW video is one judge request carrying the 2.0 APS protocol's frames (upstream's verl-omni scorer sends
    one request per frame); a bad shape fails that sample alone, with a neutral score."""
    import decord

    from integrations.verl_omni.unified_reward import compute_score_unifiedreward as scorer
    from integrations.verl_omni.unified_reward import load_reward_model

    row = json.loads(Path(toy_world["data"]["video_points"]).read_text().splitlines()[0])
    reader = decord.VideoReader(str(Path(toy_world["data_dir"]) / row["video"]))
    video = torch.from_numpy(reader.get_batch(list(range(len(reader)))).asnumpy()).permute(0, 3, 1, 2).contiguous()
    common = {"model_path": toy_world["reward_model"], "device": "cpu", "max_new_tokens": 4}
    backend = load_reward_model(toy_world["reward_model"], None, "cpu", max_new_tokens=4).backend
    requests = []
    generate = backend.generate
    monkeypatch.setattr(backend, "generate", lambda batch, budget: requests.extend(batch) or generate(batch, budget))
    result = asyncio.run(scorer("toy", video, row["prompt"], {}, **common))
    assert len(requests) == 1 and len(requests[0].media) == min(len(reader), 16)
    assert "Physics Score" in requests[0].text and result["unifiedreward_failed"] in (0.0, 1.0)
    bad = asyncio.run(scorer("toy", video[:, :, :, :0], row["prompt"], {}, **common))
    assert bad["unifiedreward_status"] == "media_error" and bad["unifiedreward_failed"] == 1.0 and bad["score"] > 0


# --------------------------------------------------------------------------- OpenRLHF reward_func (main env)


def test_openrlhf_reward_func_matches_a_direct_call_and_fails_neutral(toy_world, judge, und_rows, monkeypatch):
    from integrations.openrlhf import reward_func as module

    for key, value in toy_env(toy_world).items():
        monkeypatch.setenv(key, value)
    prompts = [f"<|im_start|>user\n{r['question']}<|im_end|>\n<|im_start|>assistant\n" for r in und_rows]
    queries = [p + r["completion"] + "<|im_end|>" for p, r in zip(prompts, und_rows)]
    labels = [r["label"] for r in und_rows]
    out = module.reward_func(queries + ["x"], prompts + ["x"], labels + ['{"image": "/no/such.png"}'])
    want = direct_und(judge, und_rows)
    assert out["rewards"][:-1].tolist() == pytest.approx(want, abs=1e-6)
    assert out["scores"].tolist() == out["rewards"].tolist()
    assert out["extra_logs"]["unifiedreward_failed"].tolist() == [0.0] * len(und_rows) + [1.0]
    assert out["rewards"][-1].item() == pytest.approx(module._FILLS.fill("never seen").value) and out["rewards"][-1] > 0


# --------------------------------------------------------------------------- the frameworks' own loaders


@pytest.mark.slow
def test_ms_swift_loads_the_plugin_and_its_grpo_reward_path_matches(toy_world, judge, und_rows, tmp_path):
    """ms-swift's ``import_external_file`` (``--external_plugins``), ``resolve_reward_funcs`` (``--reward_funcs
    unifiedreward unifiedreward_winrate``) and ``compute_rewards_per_func`` on ``GRPOSample`` rows, in ms-swift's
    environment: point scores and win rates (each row's two answers, every pair in both orders, as configured through
    ``UNIFIEDREWARD_CONFIG``'s ``pairwise`` section) equal direct calls."""
    python = framework_python("swift")
    config = tmp_path / "unifiedreward.json"
    config.write_text(json.dumps({"pairwise": {"pairing": "round_robin", "aggregate": "win_rate"}}))
    out = run_script(python, "ms_swift_rewards.py", str(REPO / "integrations/ms_swift/plugin.py"),
                     write_rows(tmp_path, und_rows), "unifiedreward", "unifiedreward_winrate",
                     env={**toy_env(toy_world), "UNIFIEDREWARD_CONFIG": str(config)})
    assert out["names"] == ["UnifiedRewardORM", "UnifiedRewardWinRateORM"]
    points, winrates = out["rewards"]
    assert points == pytest.approx(direct_und(judge, und_rows), abs=TOLERANCE)
    pairs = [JudgeItem(media=[a["image"]], fields={"question": a["question"], "answer1": a["completion"],
                                                   "answer2": b["completion"]}) for a, b in zip(und_rows[::2], und_rows[1::2])]
    shares = [r.probs["1"] for r in judge.compare_batch(PAIR, pairs, swap=True, mode="logit")]
    assert winrates == pytest.approx([v for share in shares for v in (share, 1 - share)], abs=TOLERANCE)


@pytest.mark.slow
def test_openrlhf_loads_reward_func_and_its_rollout_matches(toy_world, judge, und_rows, tmp_path):
    """OpenRLHF's ``SingleTurnAgentExecutor`` loads the file as ``--remote_rm_url`` does and runs a rollout (only its
    vLLM engine is a stand-in: it answers with the row's completion) that decodes the query and calls reward_func."""
    python = sys.executable  # OpenRLHF is in the main environment (env/nodeps-main.txt: its GPU pins cannot install)
    rows = und_rows + [{"label": "not json", "question": "q", "completion": "x"}]
    out = run_script(python, "openrlhf_rewards.py", str(REPO / "integrations/openrlhf/reward_func.py"),
                     toy_world["policy_model"], write_rows(tmp_path, rows), env=toy_env(toy_world))
    assert [o["reward"] for o in out[:-1]] == pytest.approx(direct_und(judge, und_rows), abs=TOLERANCE)
    assert out[-1]["failed"] == 1.0 and out[-1]["reward"] > 0  # a bad label: a neutral reward, the step goes on


@pytest.mark.slow
def test_verl_loads_the_scorer_and_its_scores_match(toy_world, judge, tmp_path):
    """verl's ``get_custom_reward_fn`` (``reward.custom_reward_function.{path,name,reward_kwargs}``), awaited by
    keyword as verl-omni's ``VisualRewardManager`` calls it, in verl's environment."""
    python = framework_python("verl")
    lines = Path(toy_world["data"]["image_points"]).read_text().splitlines()[:3]
    rows = [{"image": str(Path(toy_world["data_dir"]) / r["image"]), "prompt": r["prompt"]} for r in map(json.loads, lines)]
    kwargs = {"model_path": toy_world["reward_model"], "mode": "logit", "device": "cpu"}
    out = run_script(python, "verl_rewards.py", str(REPO / "integrations/verl_omni/unified_reward.py"),
                     write_rows(tmp_path, rows), json.dumps(kwargs))
    items = [JudgeItem(media=[r["image"]], fields={"prompt": r["prompt"]}) for r in rows]
    want = [(r.score - 1) / 4 for r in judge.score_batch(get_template(GEN), items, mode="logit")]
    assert [o["score"] for o in out] == pytest.approx(want, abs=TOLERANCE)
    assert {o["unifiedreward_status"] for o in out} == {"ok"}


@pytest.mark.slow
def test_verl_omni_scorer_through_the_reward_router_matches_the_server(toy_world, vllm_server):
    """The reward router verl-omni starts is a vLLM server reached as ``host:port`` under ``model_name``: logit mode
    through it equals a direct ``UnifiedReward.from_server`` call on the same image (one request each)."""
    from integrations.verl_omni.unified_reward import compute_score_unifiedreward as scorer

    row = json.loads(Path(toy_world["data"]["image_points"]).read_text().splitlines()[0])
    path = str(Path(toy_world["data_dir"]) / row["image"])
    address = vllm_server.base_url.removeprefix("http://")
    got = asyncio.run(scorer("toy", chw(path), row["prompt"], {}, reward_router_address=address,
                             model_name="UnifiedReward", mode="logit"))
    direct = UnifiedReward.from_server(vllm_server.base_url + "/v1", model="UnifiedReward")
    [want] = direct.score_batch(GEN, [JudgeItem(media=[path], fields={"prompt": row["prompt"]})], mode="logit")
    assert got["unifiedreward_status"] == "ok" and got["score"] == pytest.approx((want.score - 1) / 4, abs=1e-9)
