"""One call from benchmark data to a report: load, judge, summarize."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reward_core.prompts import Template, get_template
from .loaders import LoadedBenchmark, load_benchmark
from .media_cache import MediaCache
from .report import BenchReport, summarize
from .runner import BenchmarkRunner, PairOutcome


def evaluate(
    model: Any,
    benchmark: str | LoadedBenchmark,
    data: str | Path | None = None,
    *,
    media_root: str | Path | None = None,
    template: str | Template | None = None,
    mode: str = "generate",
    swap: bool = False,
    seed: int = 0,
    limit: int | None = None,
    subset: str | None = None,
    split: str | None = None,
    batch_size: int = 16,
    video_options: dict[str, Any] | None = None,
    media_cache_size: int = 256,
    model_name: str | None = None,
    progress: bool = True,
) -> tuple[BenchReport, list[PairOutcome]]:
    """Evaluate ``model`` (a ``UnifiedReward``) on a benchmark; returns the report and every pair's outcome.

    ``benchmark`` is a benchmark name (then ``data`` is a file, a saved dataset dir, ``hf:<repo>``,
    or None for the Hub copy) or an already loaded :class:`LoadedBenchmark`. ``video_options`` go
    to each video's ``VideoSpec`` (``nframes``, ``fps``, ``max_pixels``, ``as_frames``);
    ``media_cache_size`` bounds how many prepared media items stay in memory.
    """
    loaded = benchmark if isinstance(benchmark, LoadedBenchmark) else load_benchmark(
        benchmark, data, media_root=media_root, subset=subset, split=split, limit=limit
    )
    cache = MediaCache(capacity=media_cache_size, video_options=video_options)
    runner = BenchmarkRunner(
        model, loaded.spec, template, mode=mode, swap=swap, seed=seed, batch_size=batch_size, media_cache=cache
    )
    outcomes = runner.run(loaded.items, progress=progress)
    report = summarize(
        loaded.spec,
        outcomes,
        template=get_template(template or loaded.spec.template).key,
        mode=mode,
        swap=swap,
        seed=seed,
        model=model_name,
        invalid=loaded.invalid,
    )
    report.media_cache = {"hits": cache.hits, "misses": cache.misses}
    return report, outcomes
