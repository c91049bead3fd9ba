"""`esper bench serve`'s dashboard figures: both measured in Chromium, named as the issue fixes them."""

from __future__ import annotations

import pytest

from ops.bench import BenchOptions
from ops.bench.serve_dashboard import dashboard_results


@pytest.mark.slow
def test_dashboard_figures_are_measured_in_the_browser() -> None:
    results = dashboard_results(BenchOptions(quick=True, data_dir="", progress=lambda _: None))
    figures = {result.name: result for result in results}
    assert set(figures) == {"live_update_p95_ms", "dashboard_load_ms"}
    for result in results:
        assert result.unit == "ms" and result.value > 0 and result.target
        assert result.met is not None
