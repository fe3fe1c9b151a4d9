"""The demo's ground truth: the toy world's oracles (``unifiedreward.toy.oracle``) applied to what the commands wrote.

Per held-out prompt: the share of asked-about attributes the policy's sampled answers get right (against the scene
record), and the share of well-lit quadrants in the generator's images (from their pixels); before vs after DPO,
paired per prompt, with a one-sided paired permutation test. The judge is checked against the gold labels
(held-out pair accuracy) and the gold quality levels (Spearman of its point scores). Also the control: the same pairs
with chosen/rejected swapped for every pair or for a random half (see :func:`write_control_pairs`).
"""

from __future__ import annotations

import random
import statistics
from pathlib import Path

import numpy as np

from unifiedreward.toy.data import read_jsonl, write_jsonl
from unifiedreward.toy.oracle import answer_correctness, exposure

ALPHA = 0.01  # "better by ground truth" needs the mean up and p below this
PERMUTATIONS = 20_000


def answer_scores(prompts_file: Path, sift_dir: Path) -> dict[str, float]:
    """Per prompt: mean correctness of the sampled answers (``sift.jsonl`` candidates) against the prompt's scene."""
    truth = {row["id"]: row for row in read_jsonl(prompts_file)}
    scores = {}
    for record in read_jsonl(sift_dir / "sift.jsonl"):
        row = truth[record["id"]]
        answers = [answer for answer in record["candidates"] if isinstance(answer, str)]
        if answers:
            scores[record["id"]] = statistics.fmean(answer_correctness(a, row["scene"], row["asks"]) for a in answers)
    return scores


def image_scores(candidates_dir: Path) -> dict[str, float]:
    """Per prompt: mean share of well-lit quadrants of a ``generate_candidates`` run's images."""
    return {record["id"]: statistics.fmean(exposure(candidates_dir / image) for image in record["images"])
            for record in read_jsonl(candidates_dir / "candidates.jsonl")}


def paired_p(deltas: list[float], seed: int = 0) -> float | None:
    """One-sided p-value that the mean of paired ``deltas`` is > 0: a sign-flip permutation test (random flips of
    each prompt's difference, ``PERMUTATIONS`` draws from a fixed seed, so the value is reproducible)."""
    if not deltas:
        return None
    values = np.asarray(deltas, dtype=np.float64)
    observed = values.mean()
    signs = np.random.default_rng(seed).choice((-1.0, 1.0), size=(PERMUTATIONS, len(values)))
    null = (signs * values).mean(axis=1)
    return float((np.sum(null >= observed - 1e-12) + 1) / (PERMUTATIONS + 1))


def paired(before: dict[str, float], after: dict[str, float]) -> dict:
    """Before vs after on the prompts scored in both runs."""
    shared = sorted(set(before) & set(after))
    deltas = [after[p] - before[p] for p in shared]
    mean_before = statistics.fmean(before[p] for p in shared) if shared else None
    mean_after = statistics.fmean(after[p] for p in shared) if shared else None
    p_value = paired_p(deltas)
    return {
        "before": mean_before, "after": mean_after, "p": p_value, "prompts": len(shared),
        "prompts_up": sum(d > 0 for d in deltas), "prompts_down": sum(d < 0 for d in deltas),
        "better": bool(shared and mean_after > mean_before and p_value < ALPHA),
        "per_prompt_before": [before[p] for p in shared], "per_prompt_after": [after[p] for p in shared],
    }


def spearman(x: list[float], y: list[float]) -> float | None:
    """Spearman rank correlation (average ranks for ties)."""
    if len(x) != len(y) or len(x) < 2:
        return None

    def ranks(values: list[float]) -> np.ndarray:
        array = np.asarray(values, dtype=np.float64)
        order = array.argsort(kind="stable")
        result = np.empty(len(array))
        result[order] = np.arange(len(array), dtype=np.float64)
        for value in np.unique(array):  # ties share their mean rank
            result[array == value] = result[array == value].mean()
        return result

    rx, ry = ranks(x), ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


def judge_points(gold_file: Path, scores_file: Path) -> dict:
    """The judge's point scores of the held-out quality images (``unifiedreward score`` output, ids of the gold
    rows) against their gold quality: Spearman, and how many were scored."""
    gold = {row["id"]: row["score"] for row in read_jsonl(gold_file) if row["split"] == "test"}
    scored = {row["id"]: row["score"] for row in read_jsonl(scores_file) if row.get("status") == "ok"}
    shared = sorted(set(gold) & set(scored))
    return {"spearman": spearman([scored[i] for i in shared], [gold[i] for i in shared]),
            "scored": len(shared), "failed": len(gold) - len(shared)}


def judge_point_items(gold_file: Path, out_path: Path) -> int:
    """``unifiedreward score --input`` rows for the held-out (``test``) quality points; media relative to the
    gold file's folder."""
    items = [{"id": row["id"], "media": [row["image"]], "fields": {"prompt": row["prompt"]}}
             for row in read_jsonl(gold_file) if row["split"] == "test"]
    write_jsonl(out_path, items)
    return len(items)


CONTROLS = {"reversed": "chosen/rejected swapped in every pair", "half": "chosen/rejected swapped for a random half"}


def swapped_ids(ids: list[str], seed: int, control: str) -> set[str]:
    """The pairs whose chosen/rejected the control swaps: all of them (``reversed``) or a seeded random half."""
    if control not in CONTROLS:
        raise ValueError(f"unknown control {control!r}; expected one of {sorted(CONTROLS)}")
    shuffled = sorted(ids)
    if control == "reversed":
        return set(shuffled)
    random.Random(f"control:{seed}").shuffle(shuffled)
    return set(shuffled[: len(shuffled) // 2])


def write_control_pairs(pairs_file: Path, out_file: Path, seed: int, control: str) -> int:
    """TRL pairs with chosen and rejected swapped as ``control`` says; returns how many were swapped."""
    rows = read_jsonl(pairs_file)
    swap = swapped_ids([row["id"] for row in rows], seed, control)
    for row in rows:
        if row["id"] in swap:
            row["chosen"], row["rejected"] = row["rejected"], row["chosen"]
            row["chosen_score"], row["rejected_score"] = row["rejected_score"], row["chosen_score"]
    write_jsonl(out_file, rows)
    return len(swap)


def write_control_image_pairs(dataset_dir: Path, out_dir: Path, seed: int, control: str) -> int:
    """The sifted Pick-a-Pic pairs with the preference (``label_0``) flipped as ``control`` says."""
    from datasets import disable_progress_bars, load_from_disk

    disable_progress_bars()  # the demo's terminal shows its own progress
    dataset = load_from_disk(str(dataset_dir))
    swap = swapped_ids(list(dataset["train"]["id"]), seed, control)
    flipped = dataset.map(lambda row: {"label_0": 1 - row["label_0"] if row["id"] in swap else row["label_0"]},
                          keep_in_memory=True)
    flipped.save_to_disk(str(out_dir))
    return len(swap)


def section(judge: dict, understanding: dict, generation: dict, control: dict) -> dict:
    """``summary.json``'s ``ground_truth``: the issue's schema, plus counts and per-prompt values."""
    return {"judge_accuracy": judge.get("accuracy"), "judge_spearman": judge.get("spearman"), "judge": judge,
            "understanding": understanding, "generation": generation, "control": control,
            "alpha": ALPHA, "test": f"one-sided paired sign-flip permutation test per prompt ({PERMUTATIONS} draws)"}
