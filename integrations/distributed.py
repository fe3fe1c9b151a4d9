"""Cross-process exchange for reward hooks that need a whole group (accelerate / torchrun runs).

A reward hook sees only its process's slice of a batch; a GRPO group (the completions of one prompt row)
may be spread over several processes. :class:`ProcessExchange` all-gathers small Python objects (keys,
texts, scores, never model tensors) between the processes of a ``torch.distributed`` run, on a process
group of its own (gloo, so it works whatever the training backend), created on first use. In a
single-process run it is the identity, so the same code gives the same results with 1 or N processes.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from typing import Any

logger = logging.getLogger(__name__)


def _dist() -> Any:
    try:
        import torch.distributed as dist
    except ImportError:  # torch without distributed support
        return None
    return dist if dist.is_available() and dist.is_initialized() else None


class ProcessExchange:
    """``gather(obj) -> [obj of rank 0, obj of rank 1, ...]`` over every process (``[obj]`` without a run).

    Each exchange owns a gloo group, so two reward functions exchanging concurrently (TRL's async reward
    functions) never mix their messages. The group is created on the first call, which every process must
    reach in the same order as its other exchanges' first calls (TRL calls reward functions in list order).
    """

    def __init__(self) -> None:
        self._group: Any = None
        self._lock = threading.Lock()

    @property
    def world_size(self) -> int:
        dist = _dist()
        return dist.get_world_size() if dist else 1

    @property
    def rank(self) -> int:
        dist = _dist()
        return dist.get_rank() if dist else 0

    def _process_group(self, dist: Any) -> Any:
        if self._group is None:
            self._group = dist.new_group(backend="gloo")
        return self._group

    def gather(self, obj: Any) -> list[Any]:
        dist = _dist()
        if dist is None or dist.get_world_size() == 1:
            return [obj]
        with self._lock:
            group = self._process_group(dist)
            out: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(out, obj, group=group)
        return out

    def __getstate__(self) -> dict:  # picklable (the group is per process)
        return {}

    def __setstate__(self, state: dict) -> None:
        self.__init__()


def media_fingerprint(media: Any) -> str:
    """A short stable id of one media entry: a path or URL as is, pixels / bytes hashed."""
    if isinstance(media, str):
        return media
    if isinstance(media, (bytes, bytearray)):
        return "bytes:" + hashlib.blake2b(bytes(media), digest_size=12).hexdigest()
    tobytes = getattr(media, "tobytes", None)
    if callable(tobytes):  # PIL image, numpy array
        size = getattr(media, "size", None)
        shape = getattr(media, "shape", size)
        return f"px{shape}:" + hashlib.blake2b(tobytes(), digest_size=12).hexdigest()
    numpy = getattr(media, "numpy", None)
    if callable(numpy):  # torch tensor
        return media_fingerprint(media.detach().cpu().contiguous().numpy())
    return repr(media)
