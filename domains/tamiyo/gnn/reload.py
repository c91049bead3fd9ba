"""The hot-reload work a live run keeps off its training thread: one long-lived worker thread per process.

The training thread hands the worker its jobs in one queue put a boundary at most and goes on; it never
starts or joins a thread at an epoch boundary. The worker runs under SCHED_BATCH, so that its wake does
not preempt the training thread. Jobs:
- `Verification`: signature, sha256, schema and shapes of a requested policy (the artifact read from
  disk) and, given the graph of the boundary that took the request, its smoke decision. The boundary
  that activates it looks at an event: set long since, unless the disk is very slow (then it waits: a
  resumed run must activate at the same boundary, so the swap may not depend on the worker's timing).
- `remove_request`: the control file of a request that took effect, removed once the controller's state
  that records it has been captured (see `domains.tamiyo.gnn.controller`);
- `release`: policies the controller dropped (a network of hundreds of tensors), freed here.
What the worker does still holds the interpreter lock for ~13 ms a reload (torch.load's weights-only
unpickler about half of it, building the network, the smoke decision), shared with whatever the training
thread does meanwhile.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable

import torch

from domains.tamiyo.gnn.graph import policy_graph
from domains.tamiyo.gnn.network import PolicyNetwork
from domains.tamiyo.gnn.sampling import sample
from domains.tamiyo.observation import tiebreak
from domains.tamiyo.policy_control import PolicyRequest, done
from domains.tamiyo.policy_store import PolicyError, PolicyLibrary, VerifiedPolicy, verify
from leyline import pb
from leyline.datadir import DataDir
from leyline.signing import Keyring

SmokeInput = tuple[pb.PolicyObservation, torch.Tensor]  # a decision's observation and blueprint features
log = logging.getLogger(__name__)


def smoke(network: PolicyNetwork, inputs: SmokeInput, seed: int) -> None:
    """One decision of a network on a graph; raises on non-finite outputs."""
    observation, features = inputs
    generator = torch.Generator().manual_seed(tiebreak(seed, f"smoke:{observation.packet.packet_id}"))
    sample(network, policy_graph(observation, features), generator)


class Worker:
    """A daemon thread running submitted jobs in order; started on first use (again in a forked child)."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], None], ...]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread now if it is not running (a controller calls this when it is built, so that
        no epoch boundary pays for a thread start)."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="tamiyo-policy-worker", daemon=True)
                self._thread.start()

    def submit(self, *jobs: Callable[[], None]) -> None:
        """Hand jobs over in one put (one wake of the worker), to run in order."""
        if not jobs:
            return
        if self._thread is None or not self._thread.is_alive():
            self.start()
        self._jobs.put(jobs)

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every job submitted before this call has run; False on a timeout."""
        finished = threading.Event()
        self.submit(finished.set)
        return finished.wait(timeout)

    def _run(self) -> None:
        batch_scheduling()
        while True:
            jobs = self._jobs.get()
            _run_all(jobs)
            del jobs  # what the jobs held (a dropped network, a candidate) is freed here


def _run_all(jobs: tuple[Callable[[], None], ...]) -> None:
    for job in jobs:
        try:
            job()
        except Exception:  # a job reports its own failures; this keeps the worker alive
            log.exception("tamiyo policy worker: a job failed")


def batch_scheduling() -> None:
    """Put the calling thread under SCHED_BATCH (Linux; same CPU share, no nice change): a batch thread
    woken by the training thread's hand-off does not preempt it, so on a machine whose cores are all
    busy, the hand-off does not cost the training thread its core (it did: ~3 ms wall at load 9 on 2
    cores). Elsewhere, or where it is refused, the thread stays as it is."""
    policy = getattr(os, "SCHED_BATCH", None)
    if policy is None:
        return
    try:
        os.sched_setscheduler(0, policy, os.sched_param(0))  # 0: the calling thread, on Linux
    except OSError as exc:
        log.debug("tamiyo policy worker stays under its scheduling policy: %s", exc)


WORKER = Worker()


class Verification:
    """A candidate verified on the worker: signature, hash, schema, shapes and, given the graph of the
    boundary that took the request, the smoke decision (`smoked`)."""

    def __init__(
        self,
        request: PolicyRequest,
        keyring: Keyring,
        library: PolicyLibrary,
        inputs: SmokeInput | None,
        seed: int,
    ) -> None:
        """Nothing runs until `run` is submitted to the worker."""
        self.request = request
        self.result: VerifiedPolicy | None = None
        self.error: str = ""
        self.smoked = False
        self._finished = threading.Event()
        self._arguments = (keyring, library, inputs, seed)

    def finished(self) -> bool:
        return self._finished.is_set()

    def wait(self) -> None:
        self._finished.wait()

    def run(self) -> None:
        try:
            self._verify(*self._arguments)
        finally:
            self._finished.set()

    def _verify(self, keyring: Keyring, library: PolicyLibrary, inputs: SmokeInput | None, seed: int) -> None:
        try:
            if self.request.published is None:
                raise PolicyError(f"activation of {self.request.version!r} carries no publication")
            self.result = verify(self.request.published, keyring, library)
        except PolicyError as exc:
            self.error = str(exc)
            return
        except Exception as exc:
            self.error = f"policy {self.request.version}: {type(exc).__name__}: {exc}"
            return
        if inputs is not None:
            try:
                smoke(self.result.network, inputs, seed)
            except Exception as exc:
                self.error = (
                    f"policy {self.result.version}: smoke decision failed: {type(exc).__name__}: {exc}"
                )
            self.smoked = True


def release(objects: list[object]) -> Callable[[], None]:
    """A job that holds objects until it has run: a dropped policy's network (hundreds of tensors) is
    freed on the worker, not at an epoch boundary."""
    held = tuple(objects)

    def job() -> None:
        nonlocal held
        held = ()

    return job


def remove_request(data_dir: DataDir, request: PolicyRequest) -> Callable[[], None]:
    """A job removing a request's control file (a newer request in its place stays)."""

    def job() -> None:
        try:
            done(data_dir, request)
        except OSError as exc:  # the file stays; the run ignores a request it already took
            log.warning("policy request %s: control file not removed: %s", request.request_id, exc)

    return job
