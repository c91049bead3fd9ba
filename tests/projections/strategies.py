"""Hypothesis strategies: valid event logs built by the simulator, with runs interleaved at random."""

from __future__ import annotations

from collections.abc import Iterator

from hypothesis import strategies as st

from leyline import pb
from ops.bench._workload import Simulator


@st.composite
def event_logs(draw: st.DrawFn, max_runs: int = 3, max_epochs: int = 25) -> list[pb.EventEnvelope]:
    simulator = Simulator(seed=draw(st.integers(0, 2**16)))
    shuffle = draw(st.randoms(use_true_random=False))
    events = list(simulator.catalogue(draw(st.integers(0, 4))))
    sources: list[Iterator[pb.EventEnvelope]] = [
        simulator.run(draw(st.integers(1, max_epochs)), rollback_every=draw(st.sampled_from([0, 4, 12])))
        for _ in range(draw(st.integers(1, max_runs)))
    ]
    sources += [simulator.policy_update() for _ in range(draw(st.integers(0, 2)))]
    sources += [simulator.alert() for _ in range(draw(st.integers(0, 2)))]
    sources += [simulator.compile(f"BP{number:03d}") for number in range(1, draw(st.integers(1, 3)))]
    while sources:
        source = shuffle.choice(sources)
        envelope = next(source, None)
        if envelope is None:
            sources.remove(source)
        else:
            events.append(envelope)
    return events
