"""What every `esper drill` shares: the short run with collaborators replaced and its metrics scraped, the
alert of record read back after Nissa evaluated the log, and the promtool verdict on the scraped metrics."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from domains.nissa import conditions
from domains.nissa.service import Nissa
from eventstore import EventFilter, EventStore
from leyline import decode_payload, pb
from leyline.datadir import DataDir
from ops.prometheus.evaluate import Scraper, Verdict


@dataclass
class DrillRun:
    """What a drill's run left behind: its id, and the metrics scraped at its start and every epoch."""

    run_id: str
    scraper: Scraper


def train(
    data_dir: DataDir,
    store: EventStore,
    alert: str,
    epochs: int,
    run_id: str,
    inject: Callable[[Any, int], None] | None = None,
    scraper: Scraper | None = None,
    **collaborators: Any,
) -> DrillRun:
    """A short run with the given collaborators replacing the trainer's defaults, its metrics scraped at
    the start, after every epoch and after a rollback (and wherever else the caller's `scraper` is
    called); `inject(trainer, epoch)` runs after every epoch."""
    from domains.karn.registration import register_catalogue
    from domains.tolaria.config import RunConfig
    from domains.tolaria.report import Progress
    from ops.compose import build_trainer

    scraper = scraper or Scraper(alert)
    register_catalogue(store)
    built: list[Any] = []

    def on_epoch(measured: Any, seeds: Any) -> None:
        scraper.scrape()
        if inject is not None:
            inject(built[0], measured.epoch)

    progress = Progress(
        on_start=lambda total, epoch: scraper.scrape(),
        on_epoch=on_epoch,
        on_rollback=lambda r: scraper.scrape(),
    )
    trainer = build_trainer(
        RunConfig(epochs=epochs), run_id, store, data_dir, progress=progress, **collaborators
    )
    built.append(trainer)
    trainer.start()
    trainer.run()
    return DrillRun(run_id, scraper)


def first_rise(scraper: Scraper) -> int:
    """The first scrape at which a series the rule reads has risen since the run started."""
    first = scraper.scrapes[0]
    for minute, scrape in enumerate(scraper.scrapes):
        if any(value > first.get(series, 0.0) for series, value in scrape.items()):
            return minute
    raise ValueError("the fault never showed in the metrics the rule reads")


def first_over(scraper: Scraper, series: str, threshold: float) -> int:
    """The first scrape at which `series` has risen more than `threshold` above its value at the start."""
    start = scraper.scrapes[0].get(series, 0.0)
    for minute, scrape in enumerate(scraper.scrapes):
        if scrape.get(series, 0.0) - start > threshold:
            return minute
    raise ValueError(f"{series} never rose more than {threshold} in the drill's scrapes")


def idle_until(scraper: Scraper, minute: int) -> int:
    """Go on scraping the idle process, as Prometheus would, until `minute`; returns it."""
    while len(scraper.scrapes) <= minute:
        scraper.scrape()
    return minute


def alert_of_record(store: EventStore, name: str) -> dict[str, int | None]:
    """Evaluate the log with Nissa; the epochs (and log positions) of the alert instance's first firing and
    of its resolution after it."""
    Nissa(store).catch_up()
    found: dict[str, int | None] = dict.fromkeys(
        ("fired_at_epoch", "fired_position", "resolved_at_epoch", "resolved_position")
    )
    for envelope in events(store, *conditions.ALERT_EVENTS):
        if decode_payload(envelope).name != name:  # type: ignore[attr-defined]
            continue
        key = "fired" if envelope.event_type == "AlertFired" else "resolved"
        if found[f"{key}_position"] is None and (key == "fired" or found["fired_position"] is not None):
            found[f"{key}_position"] = envelope.global_position
            found[f"{key}_at_epoch"] = envelope.epoch if envelope.HasField("epoch") else None
    return found


def events(store: EventStore, *types: str) -> list[pb.EventEnvelope]:
    return list(store.read_all(event_filter=EventFilter(event_types=frozenset(types))))


def verdict_of(verdict: Verdict) -> dict[str, Any]:
    return {
        "expression_true_at_minutes": verdict.firing_at,
        "expression_false_at_minutes": verdict.quiet_at,
        "promtool_passed": verdict.passed,
        "promtool_output": verdict.output,
    }
