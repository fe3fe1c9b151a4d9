"""Turn judged pairs into the benchmark's metrics, a JSON report and a markdown table."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from reward_core.atomic_files import atomic_write_text

from .items import InvalidRecord
from .loaders import VL_REWARDBENCH_CATEGORIES, BenchmarkSpec
from .metrics import (
    accuracy,
    accuracy_without_ties,
    category_accuracies,
    macro_accuracy,
    position_bias,
    tie_calibrated_accuracy,
)
from .runner import PairOutcome


def _sign(value: float) -> int:
    return (value > 0) - (value < 0)


@dataclass
class BenchReport:
    """Everything a benchmark run measured. Failed pairs are counted here and in no metric."""

    benchmark: str
    template: str
    mode: str
    swap: bool
    seed: int
    model: str | None
    n_pairs: int
    n_scored: int
    n_failed: int
    n_human_ties: int
    failures: dict[str, int]
    metrics: dict[str, float | None]
    position_bias: dict[str, float | int | None]
    n_invalid_records: int = 0
    invalid_records: list[dict[str, Any]] = field(default_factory=list)
    media_cache: dict[str, int] = field(default_factory=dict)
    predictions: dict[str, Any] = field(default_factory=dict)  # the predictions.jsonl summarised (write_report)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_markdown(self) -> str:
        return render_markdown(self)


def summarize(
    spec: BenchmarkSpec,
    outcomes: list[PairOutcome],
    *,
    template: str,
    mode: str,
    swap: bool,
    seed: int,
    model: str | None = None,
    invalid: list[InvalidRecord] | None = None,
) -> BenchReport:
    """Compute ``spec``'s metrics over the pairs that were judged successfully."""
    invalid = invalid or []
    scored = [outcome for outcome in outcomes if outcome.ok]
    failed = [outcome for outcome in outcomes if not outcome.ok]
    human = [outcome.item.human for outcome in scored]
    margins = [outcome.margin for outcome in scored]
    if spec.metrics == ("overall", "macro"):
        metrics = _overall_macro(scored)
    else:
        metrics = _tau_diff(human, margins)
    return BenchReport(
        benchmark=spec.name,
        template=template,
        mode=mode,
        swap=swap,
        seed=seed,
        model=model,
        n_pairs=len(outcomes),
        n_scored=len(scored),
        n_failed=len(failed),
        n_human_ties=sum(1 for outcome in outcomes if outcome.item.human == 0),
        failures=dict(Counter(outcome.status.value for outcome in failed)),
        metrics=metrics,
        position_bias=_position_bias(scored),
        n_invalid_records=len(invalid),
        invalid_records=[record.to_dict() for record in invalid],
    )


def _tau_diff(human: list[int], margins: list[float]) -> dict[str, float | None]:
    tau = tie_calibrated_accuracy(human, margins)
    reference = tie_calibrated_accuracy(human, margins, per_pair_sweep=True)
    return {
        "tau": tau.accuracy if tau else None,
        "tau_epsilon": tau.epsilon if tau else None,
        "tau_per_pair_sweep": reference.accuracy if reference else None,
        "diff": accuracy_without_ties(human, margins),
    }


def _overall_macro(scored: list[PairOutcome]) -> dict[str, float | None]:
    correct = [_sign(outcome.margin) == outcome.item.human for outcome in scored]
    per_category = category_accuracies([outcome.item.category or "general" for outcome in scored], correct)
    metrics: dict[str, float | None] = {"overall": accuracy(correct), "macro": macro_accuracy(per_category)}
    for category in VL_REWARDBENCH_CATEGORIES:
        metrics[category] = per_category.get(category)
    for category, value in per_category.items():
        metrics.setdefault(category, value)
    return metrics


def _position_bias(scored: list[PairOutcome]) -> dict[str, float | int | None]:
    presentations = [(outcome.item.human, p) for outcome in scored for p in outcome.presentations]
    swapped = [
        tuple(_sign(p.margin) for p in outcome.presentations) for outcome in scored if len(outcome.presentations) == 2
    ]
    bias = position_bias(
        [p.preferred_slot(human) for human, p in presentations],
        [p.verdict_slot for _, p in presentations],
        swapped,
    )
    return {**asdict(bias), "gap": bias.gap}


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{100 * value:.1f}"
    return str(value)


def render_markdown(report: BenchReport) -> str:
    """A short markdown summary: headline metrics, position bias, failures (percentages)."""
    metric_names = [name for name in report.metrics if name not in ("tau_epsilon", "tau_per_pair_sweep")]
    lines = [
        f"## {report.benchmark}",
        "",
        f"template `{report.template}`, mode `{report.mode}`, "
        f"{'both orders' if report.swap else f'one seeded order (seed {report.seed})'}"
        + (f", model `{report.model}`" if report.model else ""),
        "",
        "| pairs | scored | failed | " + " | ".join(metric_names) + " |",
        "|---" * (3 + len(metric_names)) + "|",
        f"| {report.n_pairs} | {report.n_scored} | {report.n_failed} | "
        + " | ".join(_fmt(report.metrics[name]) for name in metric_names)
        + " |",
        "",
        "Position bias (accuracy, %):",
        "",
        "| preferred shown first | preferred shown second | gap | picks slot 1 | consistency (both orders) |",
        "|---|---|---|---|---|",
        "| {} (n={}) | {} (n={}) | {} | {} | {} |".format(
            _fmt(report.position_bias["accuracy_preferred_first"]),
            report.position_bias["n_preferred_first"],
            _fmt(report.position_bias["accuracy_preferred_second"]),
            report.position_bias["n_preferred_second"],
            _fmt(report.position_bias["gap"]),
            _fmt(report.position_bias["first_slot_rate"]),
            _fmt(report.position_bias["consistency"]),
        ),
    ]
    if report.failures or report.n_invalid_records:
        lines += ["", "Excluded from every metric:"]
        lines += [f"- {count} pair(s) with {status}" for status, count in sorted(report.failures.items())]
        if report.n_invalid_records:
            lines.append(f"- {report.n_invalid_records} row(s) not in the benchmark schema")
    return "\n".join(lines) + "\n"


def write_report(report: BenchReport, outcomes: list[PairOutcome], out_dir: str | Path) -> dict[str, Path]:
    """Write ``predictions.jsonl`` (one line per pair), ``report.md`` and ``metrics.json`` to ``out_dir``.

    Each file is replaced whole (:mod:`reward_core.atomic_files`). A previous run's ``metrics.json`` and
    ``report.md`` are removed before the predictions are replaced, and ``metrics.json`` is written last,
    naming the lines and sha256 of the ``predictions.jsonl`` it summarises: after a kill at any point,
    a ``metrics.json`` that exists describes the ``predictions.jsonl`` beside it.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"metrics": out / "metrics.json", "report": out / "report.md", "predictions": out / "predictions.jsonl"}
    for stale in (paths["metrics"], paths["report"]):
        stale.unlink(missing_ok=True)
    atomic_write_text(paths["predictions"], "".join(json.dumps(o.to_dict(), ensure_ascii=False) + "\n" for o in outcomes))
    report.predictions = predictions_digest(paths["predictions"])
    atomic_write_text(paths["report"], report.to_markdown())
    atomic_write_text(paths["metrics"], json.dumps(report.to_dict(), indent=2) + "\n")
    return paths


def predictions_digest(path: str | Path) -> dict[str, Any]:
    """What ``predictions.jsonl`` holds: its file name, number of lines and sha256."""
    data = Path(path).read_bytes()
    return {"file": Path(path).name, "lines": data.count(b"\n"), "sha256": hashlib.sha256(data).hexdigest()}
