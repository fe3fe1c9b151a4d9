"""One call per source kind: stream an input file into a LLaMA-Factory JSONL file."""

from __future__ import annotations

import functools
import os

from .media_paths import MediaResolver
from .preference_data import convert_preference_row
from .report import ConversionReport
from .runner import convert_file
from .sampling import SamplingStrategy
from .toy_judge_data import convert_toy_judge_row
from .unifiedreward_data import convert_unifiedreward_row


def convert_unifiedreward(
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    media_dir: str | os.PathLike[str],
    *,
    source_root: str | os.PathLike[str] | None = None,
    verify_media: bool = True,
    strict: bool = False,
    progress: bool = False,
    sampling: str = "all",
    max_frames: int = 32,
    extract_frames: bool = False,
) -> ConversionReport:
    """Released UnifiedReward data (LLaVA-NeXT items, HF parquet, Think CoT/GRPO) -> sharegpt SFT JSONL.

    ``sampling`` is upstream's per-dataset strategy (``all``, ``random:N``, ``first:N``, ``end:N``,
    ``N%``; see :mod:`data_converters.sampling`); ``max_frames`` caps frame-folder videos;
    ``extract_frames`` turns video files into frame lists (to train them with frame-folder datasets).
    """
    resolver = _resolver(media_dir, source_root, verify_media, max_frames, extract_frames)
    convert_row = functools.partial(convert_unifiedreward_row, resolver=resolver)
    return _convert(input_path, output_path, convert_row, strict, progress, sampling)


def convert_preference(
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    media_dir: str | os.PathLike[str],
    *,
    source_root: str | os.PathLike[str] | None = None,
    verify_media: bool = True,
    strict: bool = False,
    progress: bool = False,
    sampling: str = "all",
    max_frames: int = 32,
    extract_frames: bool = False,
) -> ConversionReport:
    """Generic preference pairs or sift output -> sharegpt pairwise JSONL (``ranking: true``, DPO stage)."""
    resolver = _resolver(media_dir, source_root, verify_media, max_frames, extract_frames)
    convert_row = functools.partial(convert_preference_row, resolver=resolver)
    return _convert(input_path, output_path, convert_row, strict, progress, sampling)


def convert_toy_judge(
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    media_dir: str | os.PathLike[str],
    *,
    template_key: str | None = None,
    split: str | None = "train",
    source_root: str | os.PathLike[str] | None = None,
    verify_media: bool = True,
    strict: bool = False,
    progress: bool = False,
    sampling: str = "all",
    max_frames: int = 32,
    extract_frames: bool = False,
) -> ConversionReport:
    """Toy-world judge data -> UnifiedReward SFT JSONL (prompt from reward_core's registry).

    Only rows of ``split`` are written (``None`` = all); ``source_root`` defaults to the input's folder.
    """
    if source_root is None:
        source_root = os.path.dirname(os.path.abspath(input_path))
    resolver = _resolver(media_dir, source_root, verify_media, max_frames, extract_frames)
    convert_row = functools.partial(convert_toy_judge_row, resolver=resolver, template_key=template_key, split=split)
    return _convert(input_path, output_path, convert_row, strict, progress, sampling)


def _resolver(media_dir, source_root, verify_media: bool, max_frames: int, extract_frames: bool) -> MediaResolver:
    return MediaResolver(
        media_dir=os.fspath(media_dir),
        source_root=os.fspath(source_root) if source_root is not None else None,
        verify=verify_media,
        max_frames=max_frames,
        extract_frames=extract_frames,
    )


def _convert(input_path, output_path, convert_row, strict: bool, progress: bool, sampling: str) -> ConversionReport:
    """Run the conversion with upstream's sampling strategy; ``report.num_samples`` is for registration."""
    strategy = SamplingStrategy.parse(sampling)
    report = convert_file(input_path, output_path, convert_row, strict=strict, progress=progress,
                          sampler=strategy.row_sampler())
    report.num_samples = strategy.num_samples(report.rows_written)
    return report
