"""Paired evidence for the gates: is a seed's effect on the validation loss larger than noise?

A gate compares two losses on the same validation examples (with the seed and without it). Comparing two
means over a few hundred examples decides on noise; comparing per example does not: the differences
d_i = loss_i(with) − loss_i(without) have a mean whose standard error shrinks with the sample size, and a
one-sided confidence bound says how large an effect the data can support. The trainer measures the
per-example losses (torch, at its edge) and hands the differences in; everything here is pure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

CONFIDENCE_Z = 1.645  # one-sided 95 % normal bound on a mean difference


@dataclass(frozen=True)
class PairedEvidence:
    """Mean of the paired differences and its one-sided confidence bounds (NaN/inf when n < 2)."""

    n: int
    mean: float
    std_error: float
    z: float = CONFIDENCE_Z

    @property
    def lower(self) -> float:
        return self.mean - self.z * self.std_error

    @property
    def upper(self) -> float:
        return self.mean + self.z * self.std_error

    def measured(self, prefix: str) -> dict[str, float]:
        """The evidence as a gate records it: sample size, mean difference, standard error, bounds, z."""
        return {
            f"{prefix}_n": float(self.n),
            f"{prefix}_mean": self.mean,
            f"{prefix}_std_error": self.std_error,
            f"{prefix}_lower": self.lower,
            f"{prefix}_upper": self.upper,
            "confidence_z": self.z,
        }


def paired(differences: Sequence[float], z: float = CONFIDENCE_Z) -> PairedEvidence:
    n = len(differences)
    if n == 0:
        return PairedEvidence(0, math.nan, math.inf, z)
    mean = math.fsum(differences) / n
    if n == 1:
        return PairedEvidence(1, mean, math.inf, z)
    variance = math.fsum((d - mean) ** 2 for d in differences) / (n - 1)
    return PairedEvidence(n, mean, math.sqrt(variance / n), z)
