"""Reward-model benchmarks: loaders, metrics, runner and report (``unifiedreward bench``)."""

from .evaluate import evaluate
from .items import InvalidRecord, PairItem
from .loaders import BENCHMARKS, BenchmarkSpec, LoadedBenchmark, get_benchmark, load_benchmark
from .metrics import (
    PositionBias,
    TieCalibratedAccuracy,
    accuracy,
    accuracy_without_ties,
    category_accuracies,
    macro_accuracy,
    position_bias,
    tie_calibrated_accuracy,
)
from .report import BenchReport, summarize, write_report
from .runner import BenchmarkRunner, PairOutcome, Presentation

__all__ = [
    "BENCHMARKS",
    "BenchReport",
    "BenchmarkRunner",
    "BenchmarkSpec",
    "InvalidRecord",
    "LoadedBenchmark",
    "PairItem",
    "PairOutcome",
    "PositionBias",
    "Presentation",
    "TieCalibratedAccuracy",
    "accuracy",
    "accuracy_without_ties",
    "category_accuracies",
    "evaluate",
    "get_benchmark",
    "load_benchmark",
    "macro_accuracy",
    "position_bias",
    "summarize",
    "tie_calibrated_accuracy",
    "write_report",
]
