"""Prometheus metrics of Simic (SPEC §11): PPO updates of Tamiyo's policy and their health."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

UPDATES = Counter("esper_simic_updates_total", "PPO updates of the GNN policy")
UPDATE_SECONDS = Histogram(
    "esper_simic_update_seconds",
    "Wall time of one PPO update (batch rebuilt from the log included)",
    buckets=(0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0),
)
TRANSITIONS = Counter("esper_simic_transitions_total", "Transitions the updates trained on")
EXPLAINED_VARIANCE = Gauge("esper_simic_explained_variance", "Explained variance of V(s) at the last update")
APPROX_KL = Gauge("esper_simic_approx_kl", "Approximate KL to the behaviour policy at the last update")
HEAD_ENTROPY = Gauge(
    "esper_simic_head_entropy", "Mean entropy of each action head at the last update", ["head"]
)
