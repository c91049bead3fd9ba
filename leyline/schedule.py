"""Learning-rate schedules: the factor on a base learning rate for an epoch of a span of epochs.

One rule for the host's optimizer group (Tolaria: the span is the whole run) and for each seed's group
(Kasmina: the span starts when the seed starts training, so a seed grafted late still learns at its base
rate first and decays over what is left of the run).
"""

from __future__ import annotations

import math

LR_SCHEDULES = ("constant", "cosine")


def lr_factor(schedule: str, epoch: int, start: int, end: int) -> float:
    """The factor for training epoch `epoch` (1-based) of the span after epoch `start` up to `end`.

    constant: 1. cosine: 0.5·(1 + cos(π·p)) with p = (epoch − 1 − start)/(end − start), the share of the
    span already trained, clamped to [0, 1]; the span's first epoch trains at the full rate and its last
    at a small fraction of it (1/24 of the way from the end: 0.004).
    """
    if schedule == "constant":
        return 1.0
    if schedule != "cosine":
        raise ValueError(f"unknown learning-rate schedule {schedule!r}; use one of {', '.join(LR_SCHEDULES)}")
    span = end - start
    if span <= 0:
        return 1.0
    progress = min(1.0, max(0.0, (epoch - 1 - start) / span))
    return 0.5 * (1.0 + math.cos(math.pi * progress))
