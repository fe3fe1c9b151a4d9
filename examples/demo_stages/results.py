"""Read what the demo's commands wrote (logs, metrics, sift records, scores) into summary numbers."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

BENCH_KEYS = ("diff", "tau", "tau_epsilon")


def read_json_if(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def llamafactory_log(output_dir: Path) -> dict:
    """Loss curve (``trainer_log.jsonl``) and run time (``all_results.json``) of a LLaMA-Factory run."""
    log = read_jsonl(output_dir / "trainer_log.jsonl")
    curve = [{"step": row["current_steps"], "loss": row["loss"]} for row in log if "loss" in row]
    final = read_json_if(output_dir / "all_results.json") or {}
    return {"steps": curve[-1]["step"] if curve else 0, "loss_curve": curve,
            "train_runtime": final.get("train_runtime"), "train_loss": final.get("train_loss")}


def bench_metrics(path: Path) -> dict:
    """Accuracy numbers of ``unifiedreward bench``'s ``metrics.json`` (failures counted, never scored)."""
    report = json.loads(path.read_text(encoding="utf-8"))
    return {
        "n_pairs": report["n_pairs"],
        "n_scored": report["n_scored"],
        "n_failed": report["n_failed"],
        **{key: report["metrics"].get(key) for key in BENCH_KEYS},
        "first_slot_rate": report["position_bias"].get("first_slot_rate"),
    }


def sift_summary(output_dir: Path) -> dict:
    """Counts of ``summary.json`` plus the chosen/rejected score gap of the kept pairs."""
    summary = json.loads((output_dir / "summary.json").read_text(encoding="utf-8"))
    kept = [r for r in read_jsonl(output_dir / "sift.jsonl") if r["status"] == "kept"]
    gaps = [r["chosen_score"] - r["rejected_score"] for r in kept]
    return {**summary, "mean_chosen_minus_rejected": statistics.fmean(gaps) if gaps else None,
            "chosen_scores": [r["chosen_score"] for r in kept], "rejected_scores": [r["rejected_score"] for r in kept]}


def _per_prompt(scores: dict[str, list[float | None]]) -> dict:
    """Per-prompt mean of the scored candidates; unscored candidates are counted, never filled in."""
    means, failed = {}, 0
    for prompt_id, values in scores.items():
        ok = [v for v in values if v is not None and math.isfinite(v)]
        failed += len(values) - len(ok)
        if ok:
            means[prompt_id] = statistics.fmean(ok)
    return {"per_prompt": means, "all": [v for vs in scores.values() for v in vs if v is not None], "failed": failed}


def sift_scores(output_dir: Path) -> dict:
    """Point scores of every sampled answer in a ``unifiedreward sift`` run, grouped per prompt."""
    return _per_prompt({r["id"]: r["scores"] for r in read_jsonl(output_dir / "sift.jsonl")})


def image_scores(path: Path) -> dict[str, dict]:
    """``unifiedreward score`` output rows ``run/prompt/index`` -> per run, scores grouped per prompt."""
    runs: dict[str, dict[str, list[float | None]]] = {}
    for row in read_jsonl(path):
        run, prompt_id, _ = row["id"].split("/")
        score = row["score"] if row.get("status") == "ok" else None
        runs.setdefault(run, {}).setdefault(prompt_id, []).append(score)
    return {run: _per_prompt(scores) for run, scores in runs.items()}


def compare(runs: dict[str, dict]) -> dict:
    """Held-out reward before vs after alignment, paired by prompt (prompts scored in both runs)."""
    before, after = runs["before"], runs["after"]
    shared = sorted(set(before["per_prompt"]) & set(after["per_prompt"]))
    deltas = [after["per_prompt"][p] - before["per_prompt"][p] for p in shared]
    mean_before = statistics.fmean(before["per_prompt"][p] for p in shared) if shared else None
    mean_after = statistics.fmean(after["per_prompt"][p] for p in shared) if shared else None
    delta = statistics.fmean(deltas) if deltas else None
    up = sum(d > 0 for d in deltas)
    p_value = sign_test(up, sum(d < 0 for d in deltas))
    return {
        "prompts": len(shared),
        "mean_before": mean_before,
        "mean_after": mean_after,
        "delta": delta,
        "delta_in_candidate_std": delta / statistics.pstdev(before["all"]) if delta is not None
        and len(before["all"]) > 1 and statistics.pstdev(before["all"]) > 0 else None,
        "prompts_improved": up,
        "sign_test_p": p_value,
        "failed_before": before["failed"],
        "failed_after": after["failed"],
        # higher on average *and* on more prompts than not (one-sided sign test p < 0.05)
        "improved": bool(delta is not None and delta > 0 and p_value is not None and p_value < 0.05),
        "prompt_means_before": [before["per_prompt"][p] for p in shared],
        "prompt_means_after": [after["per_prompt"][p] for p in shared],
        "scores_before": before["all"],
        "scores_after": after["all"],
    }


def head_to_head(path: Path) -> dict:
    """``unifiedreward compare --swap`` rows (media 1 = base model, media 2 = aligned): how often the judge
    prefers the aligned model's output, per pair and per prompt (majority of its pairs), with a sign test."""
    wins: dict[str, list[int]] = {}
    failed = 0
    for row in read_jsonl(path):
        if row.get("status") != "ok" or row.get("winner") is None:
            failed += 1
            continue
        wins.setdefault(row["id"].rsplit("/", 1)[0], []).append(row["winner"])
    verdicts = [winner for prompt in wins.values() for winner in prompt]
    after, before = verdicts.count(2), verdicts.count(1)
    prompt_balance = [prompt.count(2) - prompt.count(1) for prompt in wins.values()]
    prompts_up, prompts_down = sum(b > 0 for b in prompt_balance), sum(b < 0 for b in prompt_balance)
    p_value = sign_test(prompts_up, prompts_down)
    return {
        "pairs": len(verdicts), "failed": failed, "aligned_wins": after, "base_wins": before,
        "ties": verdicts.count(0), "aligned_win_rate": after / (after + before) if after + before else None,
        "prompts": len(wins), "prompts_aligned_preferred": prompts_up, "prompts_base_preferred": prompts_down,
        "sign_test_p": p_value,
        "improved": bool(prompts_up > prompts_down and p_value is not None and p_value < 0.05),
    }


def sign_test(up: int, down: int) -> float | None:
    """One-sided sign-test p-value of ``up`` increases vs ``down`` decreases (ties left out)."""
    n = up + down
    if n == 0:
        return None
    return sum(math.comb(n, k) for k in range(up, n + 1)) / 2**n


def diffusion_dpo_metrics(path: Path) -> dict:
    """Loss and implicit accuracy per step from ``train_diffusion_dpo``'s ``metrics.jsonl``."""
    rows = read_jsonl(path)
    return {"steps": len(rows), "loss_curve": [{"step": r["step"], "loss": r["loss"]} for r in rows],
            "implicit_acc": [r["implicit_acc"] for r in rows]}
