"""The growth benchmark's figure: test accuracy against parameters, one point per arm and seed, one
subplot per task (matplotlib, Agg: no display needed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

ARM_STYLES = {"small": "o", "grown": "*", "same_size": "s", "big": "D"}


def plot(points: Mapping[str, Mapping[str, Sequence[tuple[int, float]]]], path: Path) -> Path:
    """points: task → arm → [(parameters, test accuracy)] per seed. Writes a PNG to path."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.ticker import NullFormatter

    tasks = list(points)
    figure, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 4.5), squeeze=False)
    for axis, task in zip(axes[0], tasks, strict=True):
        for arm, marker in ARM_STYLES.items():
            seeds = points[task].get(arm, ())
            if seeds:
                axis.scatter(
                    [p for p, _ in seeds], [a for _, a in seeds], marker=marker, s=60, alpha=0.75, label=arm
                )
        axis.set_xscale("log")
        axis.xaxis.set_minor_formatter(NullFormatter())  # minor labels overlap on a short log axis
        axis.set_title(task)
        axis.set_xlabel("parameters (final model)")
        axis.set_ylabel("test accuracy")
        axis.grid(True, which="both", alpha=0.3)
        # below the axes: inside, it hid the points of any seed that fell behind it (a big arm's low seeds)
        axis.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=len(ARM_STYLES), fontsize="small")
    figure.suptitle("esper bench growth: one point per arm and seed")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
