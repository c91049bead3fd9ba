"""Side-effect faults of the adversarial templates BP046–BP049, for fault drills only.

A compiled graph can express a bad value (BP043–BP045, BP050) but not a busy wait, retained memory, a
lock inversion or unsynchronised threads. Those four templates are compiled as their tensor part (a
FaultCarrier) and wrapped, when built or loaded for a drill, in `FaultInjected`, which runs the fault
around the forward. Every fault is bounded by its parameters: the wait by `wait_ms`, the retained memory
by `max_mb`, the lock inversion by `timeout_ms`, the racing threads by `threads` and `increments`.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

HELPER_START_S = 10.0  # a bound on how long a helper thread may take to start on a loaded machine


class Fault(ABC):
    """Runs before each forward of the wrapped module; returns a value the forward adds (0 for none)."""

    @abstractmethod
    def before_forward(self, x: Tensor) -> float: ...


@dataclass
class BusyWait(Fault):
    """BP046 infinite_loop: spins for wait_ms per call, enough to trip any sane time budget, then returns."""

    wait_ms: float

    def before_forward(self, x: Tensor) -> float:
        deadline = time.perf_counter() + self.wait_ms / 1000.0
        while time.perf_counter() < deadline:
            pass
        return 0.0


@dataclass
class MemoryLeak(Fault):
    """BP047 memory_leak: retains leak_kb per call until max_mb is held, then stops growing."""

    leak_kb: float
    max_mb: float
    retained: list[Tensor] = field(default_factory=list)

    @property
    def retained_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.retained)

    def before_forward(self, x: Tensor) -> float:
        chunk = int(self.leak_kb * 1024)
        if self.retained_bytes + chunk <= self.max_mb * 1024 * 1024:
            self.retained.append(torch.empty(chunk, dtype=torch.uint8).fill_(1))
        return 0.0


@dataclass
class LockInversion(Fault):
    """BP048 deadlock_pattern: the forward and a helper thread take two locks in opposite order.

    Both acquire with a timeout, so the cycle breaks after timeout_ms: the call stalls (and counts the
    stall) instead of hanging forever; the helper then finishes within another timeout_ms.
    """

    timeout_ms: float
    stalls: int = 0
    first: threading.Lock = field(default_factory=threading.Lock)
    second: threading.Lock = field(default_factory=threading.Lock)

    def before_forward(self, x: Tensor) -> float:
        timeout = self.timeout_ms / 1000.0
        holding = threading.Event()

        def helper() -> None:
            with self.second:
                holding.set()
                # Waits longer than the forward does, so the forward's side of the cycle breaks first.
                if self.first.acquire(timeout=2 * timeout):
                    self.first.release()

        with self.first:
            thread = threading.Thread(target=helper, daemon=True)
            thread.start()
            holding.wait(HELPER_START_S)
            if self.second.acquire(timeout=timeout):
                self.second.release()
            else:
                self.stalls += 1
        thread.join(2 * timeout + HELPER_START_S)
        return 0.0


@dataclass
class RaceCondition(Fault):
    """BP049 race_condition: threads do unsynchronised read-modify-write on a shared counter.

    The forward adds a perturbation proportional to the lost updates, so outputs depend on scheduling;
    its size is bounded by threads · increments · 1e-6.
    """

    threads: int
    increments: int
    lost_updates: int = 0

    def before_forward(self, x: Tensor) -> float:
        counter = [0]

        def work() -> None:
            for _ in range(self.increments):
                value = counter[0]
                time.sleep(0)
                counter[0] = value + 1

        workers = [threading.Thread(target=work, daemon=True) for _ in range(self.threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        lost = self.threads * self.increments - counter[0]
        self.lost_updates += lost
        return lost * 1e-6


FAULTS: dict[str, Callable[[Mapping[str, float]], Fault]] = {
    "BP046": lambda p: BusyWait(wait_ms=p["wait_ms"]),
    "BP047": lambda p: MemoryLeak(leak_kb=p["leak_kb"], max_mb=p["max_mb"]),
    "BP048": lambda p: LockInversion(timeout_ms=p["timeout_ms"]),
    "BP049": lambda p: RaceCondition(threads=int(p["threads"]), increments=int(p["increments"])),
}


class FaultInjected(nn.Module):
    """A drill module: runs the fault, then the wrapped (eager or compiled) module."""

    def __init__(self, inner: nn.Module, fault: Fault) -> None:
        super().__init__()
        self.inner = inner
        self.fault = fault

    def forward(self, x: Tensor) -> Tensor:
        shift = self.fault.before_forward(x)
        out: Tensor = self.inner(x)
        return out + shift if shift else out
