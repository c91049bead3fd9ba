"""Running a policy's `decide` under a deadline, for Tamiyo's controller.

On the main thread the policy runs inline under a SIGALRM interval timer that interrupts it at the
deadline (no thread hand-off: on a loaded 2-core machine waking a worker costs milliseconds of the 12 ms
slot); elsewhere it runs on a daemon worker thread that is abandoned when it overruns. Either way the
outcome is the policy's payloads, or none and a failure (cause, reason): "timeout" or "error".
"""

from __future__ import annotations

import queue
import signal
import threading
import time
from types import FrameType
from typing import Protocol

from google.protobuf.message import Message

from domains.tamiyo.observation import Observation
from domains.tamiyo.state import TamiyoState

Outcome = tuple[list[Message], tuple[str, str] | None]


class Policy(Protocol):
    name: str
    version: str

    def decide(self, state: TamiyoState, observation: Observation) -> list[Message]: ...


class PolicyRunner:
    def __init__(self) -> None:
        self._worker: _PolicyWorker | None = None

    def run(self, policy: Policy, state: TamiyoState, observation: Observation, timeout_s: float) -> Outcome:
        job = _Job(policy, state, observation)
        if threading.current_thread() is threading.main_thread():
            return self._run_inline(job, timeout_s)
        return self._run_on_worker(job, timeout_s)

    def _timed_out(self, timeout_s: float) -> tuple[list[Message], tuple[str, str]]:
        return [], ("timeout", f"decision exceeded its timeout of {timeout_s:g} s")

    def _outcome(self, job: _Job) -> Outcome:
        if job.error is not None:
            error = job.error
            return [], ("error", f"policy failed: {type(error).__name__}: {error}")
        return job.payloads, None

    def _run_inline(self, job: _Job, timeout_s: float) -> Outcome:
        """Run under an ITIMER_REAL deadline, nested inside any timer already armed (e.g. a test timeout)."""
        outer_delay, outer_interval = signal.setitimer(signal.ITIMER_REAL, 0)
        outer_first = 0 < outer_delay <= timeout_s
        previous = signal.getsignal(signal.SIGALRM)
        outer_fired = False

        def expire(signum: int, frame: FrameType | None) -> None:
            nonlocal outer_fired
            if outer_first and callable(previous):
                outer_fired = True
                previous(signum, frame)  # the outer deadline came first: its handler decides
            raise _DecisionTimeout

        started = time.monotonic()
        signal.signal(signal.SIGALRM, expire)
        try:
            signal.setitimer(signal.ITIMER_REAL, outer_delay if outer_first else timeout_s)
            try:
                job.run()
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            if outer_fired and job.error is not None:
                raise job.error  # the outer handler's exception, not the policy's
        except _DecisionTimeout:
            return self._timed_out(timeout_s)
        finally:
            signal.signal(signal.SIGALRM, previous)
            if outer_fired and outer_interval > 0:
                signal.setitimer(signal.ITIMER_REAL, outer_interval, outer_interval)
            elif outer_delay > 0 and not outer_fired:
                remaining = outer_delay - (time.monotonic() - started)
                signal.setitimer(signal.ITIMER_REAL, max(remaining, 1e-6), outer_interval)
        return self._outcome(job)

    def _run_on_worker(self, job: _Job, timeout_s: float) -> Outcome:
        if self._worker is None:
            self._worker = _PolicyWorker()
        self._worker.submit(job)
        if not job.done.wait(timeout_s):
            self._worker.stop()  # it exits once the overrunning job returns, if ever
            self._worker = None  # the next decision gets a fresh worker
            return self._timed_out(timeout_s)
        return self._outcome(job)


class _DecisionTimeout(BaseException):
    """Raised into an inline policy by the interval timer; a BaseException so `except Exception` in a
    policy cannot swallow it."""


class _Job:
    def __init__(self, policy: Policy, state: TamiyoState, observation: Observation) -> None:
        self.policy = policy
        self.state = state
        self.observation = observation
        self.payloads: list[Message] = []
        self.error: Exception | None = None
        self.done = threading.Event()

    def run(self) -> None:
        try:
            self.payloads = self.policy.decide(self.state, self.observation)
        except Exception as exc:
            self.error = exc
        finally:
            self.done.set()


class _PolicyWorker:
    """One daemon thread that runs decisions; a daemon, so a policy stuck forever never blocks exit."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        threading.Thread(target=self._loop, name="tamiyo-policy", daemon=True).start()

    def submit(self, job: _Job) -> None:
        self._jobs.put(job)

    def stop(self) -> None:
        self._jobs.put(None)

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            job.run()
