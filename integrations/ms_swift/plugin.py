"""UnifiedReward as an ms-swift GRPO reward.

``--external_plugins integrations/ms_swift/plugin.py --reward_funcs unifiedreward``: ms-swift (4.x) imports this file
by path, which registers ``orms["unifiedreward"]``; its GRPO trainer then calls
``UnifiedRewardORM()(completions, messages=..., images=..., **columns)`` on every process with that process's rows.
Each completion is judged as an answer to the row's last user turn about the row's ``images`` (or ``videos``), with
the image-understanding point template by default, and mapped to [0, 1]:
:class:`integrations.trl.rewards.PointwiseReward` does the judging, grouping (across processes) and neutral failure
(a completion the judge could not score gets its group's mean, so it moves no advantage; ms-swift would read None as
NaN and ``nansum`` it to 0).

Configure with ``UNIFIEDREWARD_*`` variables / ``UNIFIEDREWARD_CONFIG`` (:mod:`integrations.trl.config`):
``UNIFIEDREWARD_MODEL`` (checkpoint) or ``UNIFIEDREWARD_SERVER`` (OpenAI-compatible URL), ``UNIFIEDREWARD_MODE``,
``UNIFIEDREWARD_POINTWISE_TEMPLATE``.
"""

from __future__ import annotations

import re
from typing import Any

from swift.rewards import ORM, orms

from integrations.trl.config import RewardConfig
from integrations.trl.rewards import PairwiseWinRateReward, PointwiseReward
from reward_core import VideoSpec

_MEDIA_TAGS = re.compile(r"<(?:image|video)>")


def question_of(messages: list[dict]) -> str:
    """The row's last user turn without ms-swift's ``<image>`` / ``<video>`` placeholders."""
    users = [m for m in messages if m.get("role") == "user"]
    content = users[-1].get("content", "") if users else ""
    if isinstance(content, list):
        content = "".join(part.get("text") or "" for part in content if isinstance(part, dict))
    return _MEDIA_TAGS.sub("", content).strip()


def swift_media(entry: Any) -> Any:
    """One ms-swift media entry as the judge reads it: a ``{"bytes", "path"}`` dict becomes its bytes or path."""
    if isinstance(entry, dict):
        return entry.get("bytes") or entry.get("path")
    return entry


class UnifiedRewardORM(ORM):
    """``orms["unifiedreward"]``: the UnifiedReward point score of each completion, on [0, 1]."""

    reward_class, section, name = PointwiseReward, "pointwise", "unifiedreward"

    def __init__(self, args: Any = None, reward_model: Any = None, **kwargs: Any):
        super().__init__(args)
        config = None if reward_model is not None else RewardConfig.from_env()
        options = {**(config.section(self.section) if config else {}), **kwargs}
        self.reward = self.reward_class(reward_model, config=config, name=self.name, **options)

    def __call__(self, completions: list[str], messages: list[list[dict]] | None = None, images: list | None = None,
                 videos: list | None = None, **kwargs: Any) -> list[float | None]:
        if messages is None:
            raise ValueError("unifiedreward needs the rows' messages (ms-swift passes them to every reward function)")
        columns: dict[str, Any] = {}
        if images is not None and any(images):
            columns["images"] = [[swift_media(e) for e in row] if row else None for row in images]
        elif videos is not None and any(videos):
            columns["video"] = [VideoSpec(swift_media(row[0])) if row else None for row in videos]
        prompts = [question_of(m) for m in messages]
        return self.reward(prompts, list(completions), **columns)


class UnifiedRewardWinRateORM(UnifiedRewardORM):
    """``orms["unifiedreward_winrate"]``: each completion's standing against the other completions of its row
    (Pref-GRPO style; pairs and aggregation as TRL's win-rate reward, :mod:`reward_core.pairing`:
    ``UNIFIEDREWARD_PAIRWISE_TEMPLATE`` and the ``pairwise`` config section: ``pairing``, ``k``, ``aggregate``)."""

    reward_class, section, name = PairwiseWinRateReward, "pairwise", "unifiedreward_winrate"


orms["unifiedreward"] = UnifiedRewardORM
orms["unifiedreward_winrate"] = UnifiedRewardWinRateORM
