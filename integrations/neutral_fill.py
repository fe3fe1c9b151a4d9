"""Neutral rewards for failed items when the trainer asks for one sample at a time.

verl-omni's reward managers and OpenRLHF's ``reward_func`` loader call a reward with one rollout sample, so a failed
judge call cannot be given the mean of its GRPO group as the batch hooks do (``integrations.trl.rewards``,
``integrations.diffusers.flow_grpo_reward``). Neither trainer survives the alternatives: a NaN reward turns the
group's (verl-omni: the batch's) standard deviation into NaN, so every advantage it touches is NaN; an exception stops
the run (verl-omni's ``VisualRewardManager``, OpenRLHF) or becomes 0.0, the worst score (verl-omni's
``MultiVisualRewardManager`` unless ``required``).

:class:`RunningGroupMeans` remembers the successful scores of each group key (a prompt row) in this process and
fills a failure with, in order: the mean of its group's scores so far, the mean of the last ``window`` successful
scores of any group, or the midpoint of the score scale. Its advantage is then about 0, not exactly 0 (samples of the
group that finish later are not in the mean): the best a per-sample contract allows. Each fill says which it used.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Hashable
from dataclasses import dataclass

GROUP, RECENT, MIDPOINT = "group_mean", "recent_mean", "midpoint"


@dataclass(frozen=True)
class Fill:
    """The value given to a failed item and where it came from (``group_mean``, ``recent_mean`` or ``midpoint``)."""

    value: float
    source: str


class RunningGroupMeans:
    """Per-group running means of successful scores (thread-safe, at most ``max_groups`` groups kept)."""

    def __init__(self, midpoint: float, window: int = 256, max_groups: int = 4096):
        self.midpoint = midpoint
        self.max_groups = max_groups
        self._groups: OrderedDict[Hashable, tuple[float, int]] = OrderedDict()
        self._recent: deque[float] = deque(maxlen=window)
        self._lock = threading.Lock()

    def record(self, key: Hashable, value: float) -> None:
        """A successful score of group ``key``."""
        with self._lock:
            total, count = self._groups.pop(key, (0.0, 0))
            self._groups[key] = (total + value, count + 1)
            if len(self._groups) > self.max_groups:
                self._groups.popitem(last=False)
            self._recent.append(value)

    def fill(self, key: Hashable) -> Fill:
        """The neutral value for a failed item of group ``key``."""
        with self._lock:
            if key in self._groups:
                total, count = self._groups[key]
                return Fill(total / count, GROUP)
            if self._recent:
                return Fill(sum(self._recent) / len(self._recent), RECENT)
            return Fill(self.midpoint, MIDPOINT)
