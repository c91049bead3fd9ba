"""Prometheus metrics of Urza, the artifact library."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

FETCH_LATENCY = Histogram(
    "esper_urza_fetch_latency_seconds",
    "Time to hand out a fresh module for a blueprint request",
    ["cache"],
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0, 5.0, 30.0),
)
CACHE_REQUESTS = Counter("esper_urza_cache_requests_total", "Artifact cache lookups", ["result"])
CACHE_ENTRIES = Gauge("esper_urza_cache_entries", "Artifacts held in the in-process cache")
ARTIFACTS_STORED = Counter("esper_urza_artifacts_stored_total", "Artifact files written (new content)")
ARTIFACT_BYTES = Counter("esper_urza_artifact_written_bytes", "Bytes of artifact files written")
CORRUPT_ARTIFACTS = Counter(
    "esper_urza_corrupt_artifacts_total", "Artifacts whose content did not match their sha256"
)
IDENTITY_FALLBACKS = Counter(
    "esper_urza_identity_fallbacks_total", "Requests answered with identity because the artifact was unusable"
)
INFERENCE_FALLBACKS = Counter(
    "esper_urza_inference_fallbacks_total",
    "AOTInductor packages not used (built for another device or machine, or unloadable)",
    ["reason"],
)
