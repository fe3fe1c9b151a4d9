"""Pairwise GRPO rewards: judge calls per group vs agreement, for each pairing schedule and aggregator.

    python benchmarks/pairwise_schedules.py --json bench-out/pairwise_schedules.json     # simulator + 4 toy groups
    python benchmarks/pairwise_schedules.py --groups 50 --toy-groups 0                     # simulator only

Every schedule's ordered pairs are a subset of the full both-order round robin, so each group is judged once in
every order (a table of P(first wins)) and each schedule reads its verdicts from that table: the same judge
outcome for the same ordered pair, whatever the schedule.

(a) Simulator (seeded): true qualities ``q ~ N(0, 1)``; the judge sees ``q + e`` with a per-item error
    ``e ~ N(0, --item-error)``, prefers the first slot by ``--position-bias`` (log-odds) and adds per-comparison
    logit noise ``N(0, --pair-noise)``. Soft verdict: P(first wins); hard verdict: a text verdict sampled from it.
(b) Toy judge (the toy world's reward model, or a ``--toy-judge`` checkpoint such as one trained on the toy
    quality task by ``benchmarks/toy_reward_training.py``; ``mode="logit"``): groups of one toy scene rendered at qualities 1-5
    (``unifiedreward.toy.tasks``). Soft: P("1"); hard: its argmax (the greedy text verdict).

Per schedule (rows): judge calls per group; Spearman of the rewards against the full both-order round robin's
win rates (today's default), averaged over groups; Spearman against the true quality (simulator); and the
correlation of the GRPO advantages (group-standardised rewards) with the full round robin's. ``pref_grpo`` is
Pref-GRPO's scheme: every pair once, lower index first, win rate.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reward_core.pairing import (  # noqa: E402
    Pair,
    SwissRounds,
    Verdict,
    bradley_terry,
    round_robin,
    sparse,
    win_rate,
)

logger = logging.getLogger("pairwise_schedules")

Table = np.ndarray  # table[i, j] = P(i wins when shown first against j); the diagonal unused
Schedule = Callable[[Table, int], list[Pair]]  # (verdict table, seed) -> ordered pairs judged


def swiss(table: Table, k: int, seed: int) -> list[Pair]:
    """``k`` rounds of :class:`SwissRounds`, each judged from ``table`` before the next is drawn."""
    rounds = SwissRounds(len(table), seed)
    for _ in range(k):
        pairs = rounds.next_pairs()
        rounds.record(pairs, [float(table[a, b]) for a, b in pairs])
    return [(v.first, v.second) for v in rounds.verdicts]


def schedules(ks: list[int]) -> dict[str, tuple[Schedule, Callable]]:
    """Row name -> (schedule, aggregator). Pref-GRPO: one order, win rate."""
    rows: dict[str, tuple[Schedule, Callable]] = {
        "round_robin_both": (lambda t, s: round_robin(len(t), both_orders=True), win_rate),
        "round_robin_both+bt": (lambda t, s: round_robin(len(t), both_orders=True), bradley_terry),
        "pref_grpo": (lambda t, s: round_robin(len(t)), win_rate),
        "pref_grpo+bt": (lambda t, s: round_robin(len(t)), bradley_terry),
    }
    for k in ks:
        rows[f"sparse_k{k}+win_rate"] = (lambda t, s, k=k: sparse(len(t), k, s), win_rate)
        rows[f"sparse_k{k}+bt"] = (lambda t, s, k=k: sparse(len(t), k, s), bradley_terry)
        rows[f"swiss_k{k}+bt"] = (lambda t, s, k=k: swiss(t, k, s), bradley_terry)
    return rows


# --------------------------------------------------------------------------- metrics


def ranks(values: np.ndarray) -> np.ndarray:
    """Ranks with ties averaged."""
    order = np.argsort(values, kind="stable")
    out = np.empty(len(values))
    out[order] = np.arange(len(values), dtype=float)
    for value in np.unique(values):
        tied = values == value
        out[tied] = out[tied].mean()
    return out


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson's r; NaN when either side is constant (e.g. every reward equal: no ranking to compare)."""
    a, b = a - a.mean(), b - b.mean()
    norm = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / norm) if norm > 1e-12 else float("nan")


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    return pearson(ranks(a), ranks(b))


def advantages(rewards: np.ndarray) -> np.ndarray:
    """GRPO's group-standardised advantages (TRL: (r - mean) / (std + 1e-4))."""
    return (rewards - rewards.mean()) / (rewards.std() + 1e-4)


def rewards_of(table: Table, pairs: list[Pair], aggregate: Callable) -> np.ndarray:
    result = aggregate(len(table), [Verdict(a, b, float(table[a, b])) for a, b in pairs])
    return np.array([np.nan if r is None else r for r in result.rewards])


def evaluate(tables: list[Table], truths: list[np.ndarray | None], rows: dict[str, tuple[Schedule, Callable]],
             seed: int) -> dict[str, dict]:
    """Mean metrics over groups for each row (the reference: full both-order round robin, win rate)."""
    out: dict[str, dict] = {name: {"calls": [], "rr": [], "truth": [], "adv": []} for name in rows}
    for g, (table, truth) in enumerate(zip(tables, truths)):
        size = len(table)
        reference = rewards_of(table, round_robin(size, both_orders=True), win_rate)
        for name, (schedule, aggregate) in rows.items():
            pairs = schedule(table, seed * 100_003 + g)
            rewards = rewards_of(table, pairs, aggregate)
            stats = out[name]
            stats["calls"].append(len(pairs))
            stats["rr"].append(spearman(rewards, reference))
            stats["adv"].append(pearson(advantages(rewards), advantages(reference)))
            if truth is not None:
                stats["truth"].append(spearman(rewards, truth))
    return {name: {"calls_per_group": float(np.mean(s["calls"])), "spearman_vs_round_robin": mean(s["rr"]),
                   "spearman_vs_truth": mean(s["truth"]), "advantage_corr_vs_round_robin": mean(s["adv"])}
            for name, s in out.items()}


def mean(values: list[float]) -> float | None:
    """Mean over the groups where the figure is defined (None when it is defined for none)."""
    defined = [v for v in values if not np.isnan(v)]
    return round(float(np.mean(defined)), 4) if defined else None


# --------------------------------------------------------------------------- (a) simulator


def simulate_group(size: int, rng: np.random.Generator, item_error: float, position_bias: float,
                   pair_noise: float) -> tuple[Table, Table, np.ndarray]:
    """(soft table, hard table, true quality) of one simulated group."""
    quality = rng.normal(size=size)
    seen = quality + rng.normal(scale=item_error, size=size)
    logits = seen[:, None] - seen[None, :] + position_bias + rng.normal(scale=pair_noise, size=(size, size))
    soft = 1.0 / (1.0 + np.exp(-logits))
    hard = (rng.random((size, size)) < soft).astype(float)
    return soft, hard, quality


def run_simulator(args, rows) -> list[dict]:
    out = []
    for size in args.sizes:
        rng = np.random.default_rng([args.seed, size])
        groups = [simulate_group(size, rng, args.item_error, args.position_bias, args.pair_noise)
                  for _ in range(args.groups)]
        for verdicts, which in (("soft", 0), ("hard", 1)):
            metrics = evaluate([g[which] for g in groups], [g[2] for g in groups], rows, args.seed)
            out += [{"source": "simulator", "G": size, "verdicts": verdicts, "schedule": name, **m}
                    for name, m in metrics.items()]
    return out


# --------------------------------------------------------------------------- (b) toy judge


def toy_groups(count: int, size: int, seed: int) -> list[tuple[str, list]]:
    """``count`` toy scenes, each rendered ``size`` times at qualities 1-5 in turn (caption, images)."""
    import random

    from unifiedreward.toy.scenes import random_scene
    from unifiedreward.toy.tasks import QUALITIES, render_quality_image

    rng = random.Random(f"pairwise_schedules:{seed}")
    groups = []
    for _ in range(count):
        scene = random_scene(rng)
        groups.append((scene.caption(), [render_quality_image(scene, QUALITIES[i % len(QUALITIES)], rng)
                                         for i in range(size)]))
    return groups


def toy_judge(args, world: dict):
    """The toy world's judge (untrained: P("1") ~ 0.515 for every pair), or the ``--toy-judge`` checkpoint."""
    from reward_core import UnifiedReward

    return UnifiedReward.from_pretrained(args.toy_judge or world["reward_model"], device="cpu",
                                         batch_size=args.batch_size)


def toy_tables(args) -> list[Table]:
    """Each toy group judged in every order by the toy judge in logit mode: table[i, j] = P("1")."""
    import torch

    from reward_core import JudgeItem
    from unifiedreward.toy import build_world, load_world

    torch.set_num_threads(args.threads)
    world = load_world(args.world) or build_world(args.world)
    judge = toy_judge(args, world)
    tables = []
    for caption, images in toy_groups(args.toy_groups, args.toy_size, args.seed):
        pairs = round_robin(len(images), both_orders=True)
        items = [JudgeItem(media=[images[a], images[b]], fields={"prompt": caption}) for a, b in pairs]
        results = judge.compare_batch(args.toy_template, items, mode="logit")
        table = np.full((len(images), len(images)), 0.5)
        for (a, b), result in zip(pairs, results):
            if not result.ok or not result.probs:
                raise RuntimeError(f"toy judge failed on pair {a, b}: {result.error}")
            table[a, b] = result.probs["1"]
        tables.append(table)
    return tables


def run_toy(args, rows) -> list[dict]:
    started = time.perf_counter()
    soft = toy_tables(args)
    logger.info("toy judge: %d groups of %d in %.1fs", len(soft), args.toy_size, time.perf_counter() - started)
    out = []
    for verdicts, tables in (("soft", soft), ("hard", [np.where(t > 0.5, 1.0, np.where(t < 0.5, 0.0, 0.5)) for t in soft])):
        metrics = evaluate(tables, [None] * len(tables), rows, args.seed)
        out += [{"source": "toy", "G": args.toy_size, "verdicts": verdicts, "schedule": name, **m}
                for name, m in metrics.items()]
    return out


# --------------------------------------------------------------------------- report


def table_text(rows: list[dict]) -> str:
    def cell(value):
        return "-" if value is None else f"{value:g}" if isinstance(value, float) else str(value)

    header = ["source", "G", "verdicts", "schedule", "calls", "rho_vs_rr", "rho_vs_truth", "adv_corr"]
    keys = ["source", "G", "verdicts", "schedule", "calls_per_group", "spearman_vs_round_robin",
            "spearman_vs_truth", "advantage_corr_vs_round_robin"]
    lines = [header] + [[cell(row[k]) for k in keys] for row in rows]
    widths = [max(len(line[c]) for line in lines) for c in range(len(header))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(line, widths)) for line in lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 16, 24], help="simulated group sizes G")
    parser.add_argument("--groups", type=int, default=300, help="simulated groups per G")
    parser.add_argument("--ks", type=int, nargs="+", default=[2, 4, 6, 8], help="sparse schedules' k")
    parser.add_argument("--item-error", type=float, default=0.3)
    parser.add_argument("--position-bias", type=float, default=0.5)
    parser.add_argument("--pair-noise", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--toy-groups", type=int, default=4, help="toy-judge groups (0: skip the toy judge)")
    parser.add_argument("--toy-size", type=int, default=16, help="toy group size G")
    parser.add_argument("--toy-template", default="image_generation.pair_rank.v1")
    parser.add_argument("--world", default=os.environ.get("UNIFIEDREWARD_TOY_WORLD") or
                        os.path.join(tempfile.gettempdir(), "unifiedreward-bench-world"),
                        help="toy world (built there when missing)")
    parser.add_argument("--toy-judge", default=None,
                        help="toy part's judge checkpoint (default: the toy world's, untrained; one trained on the "
                             "toy quality task: benchmarks/toy_reward_training.py --work-dir DIR -> DIR/trained)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for the toy judge")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--json", default=None, help="write {'rows': [...]} here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    rows = schedules(args.ks)
    out = run_simulator(args, rows) if args.groups else []
    if args.toy_groups:
        out += run_toy(args, rows)
    out = [{"source": r["source"], "G": r["G"], "verdicts": r["verdicts"], "schedule": r["schedule"],
            "calls_per_group": r["calls_per_group"], "spearman_vs_round_robin": r["spearman_vs_round_robin"],
            "spearman_vs_truth": r["spearman_vs_truth"],
            "advantage_corr_vs_round_robin": r["advantage_corr_vs_round_robin"]} for r in out]
    print(table_text(out))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"rows": out}, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
