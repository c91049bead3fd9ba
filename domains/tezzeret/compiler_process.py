"""The compile-ahead child process: started before the run has built anything, told what to compile later.

    compiler = CompilerProcess.start()           # at once, before the parent imports torch: no torch here
    ...                                          # the parent builds data, host, Kasmina and the controller
    compiler.compile(address, artifacts, specs)  # the child has imported its compile stack meanwhile
    for job_id in compiler.finished(): ...       # each job id as the child finishes it, in order
    compiler.compile(address, artifacts, more)   # later orders: the child waits, warm, in between
    compiler.close()

Starting the child costs the parent a fork and an exec. The child imports torch and Tezzeret and warms
up torch.export (compiler.warm_up; about 2.8 s of CPU in all) while the parent imports and builds its
run (about as much), so on a machine with a second core the first artifact is ready about when the first
epoch starts instead of seconds later. This module imports nothing heavy: the parent may import it
before torch.
"""

from __future__ import annotations

import contextlib
import multiprocessing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from domains.tezzeret.jobs import CompileSpec


IDLE_EXIT_S = 900.0  # the child exits after this long without an order (a later one compiles in the run)


@dataclass(frozen=True)
class StoreAddress:
    """Where the child opens the run's log: a file-store directory or a PostgreSQL URL, and its options."""

    location: str
    options: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class CompileOrder:
    """What the child compiles, in order, appending to the log at `address` and writing under `artifacts`."""

    address: StoreAddress
    artifacts: str
    specs: Sequence[CompileSpec]


def serve(connection: Connection) -> None:
    """The child's work: import the compile stack, then for each order (until None or a closed pipe) run
    each spec's compile job to its end (a finished job is left as it is) and report its id. Between
    orders it waits, idle: a graft the run did not foresee is compiled here, by a warm compiler. A parent
    gone while the child reports (killed mid-run, or its end closed) ends the child quietly, its finished
    jobs in the log."""
    try:
        _serve(connection)
    except (BrokenPipeError, ConnectionResetError):
        return


def _serve(connection: Connection) -> None:
    from pathlib import Path

    from leyline import collector

    collector.pause()  # until warmed up (leyline/collector.py): the compile stack's imports are long-lived
    import torch

    from domains.tezzeret.compiler import warm_up
    from domains.tezzeret.service import Tezzeret
    from domains.urza.library import ArtifactLibrary
    from eventstore import open_store

    torch.set_num_threads(1)
    # while the parent builds its run: the first job then compiles in a fraction of a second, and the
    # parent's first load of an artifact is paid on this program before the first artifact is ready
    connection.send(warm_up())
    collector.settle()
    while True:
        try:
            if not connection.poll(IDLE_EXIT_S):
                return  # idle that long: a run left unclosed does not hold a compiler's memory for ever
            order: CompileOrder | None = connection.recv()
        except EOFError:
            return
        if order is None:
            return
        store = open_store(order.address.location, create=False, **dict(order.address.options))
        try:
            compiler = Tezzeret(store, ArtifactLibrary(Path(order.artifacts), store))
            compiler.compile_many(order.specs, on_done=lambda state: connection.send(state.job_id))
        finally:
            store.close()


class CompilerProcess:
    """The parent's handle on the child (spawned: its own interpreter and random number generator)."""

    def __init__(self, process: BaseProcess, connection: Connection) -> None:
        self.process = process
        self.connection = connection

    @classmethod
    def start(cls) -> CompilerProcess:
        context = multiprocessing.get_context("spawn")
        parent_end, child_end = context.Pipe()
        process = context.Process(target=serve, args=(child_end,), name="esper-compile-ahead", daemon=True)
        process.start()
        child_end.close()
        return cls(process, parent_end)

    def compile(self, address: StoreAddress, artifacts: str, specs: Sequence[CompileSpec]) -> None:
        """Order these specs compiled, after any order before (none: nothing to do now)."""
        if not specs:
            return
        with contextlib.suppress(OSError):  # a child gone yields nothing: each request compiles where made
            self.connection.send(CompileOrder(address, artifacts, list(specs)))

    def stop(self) -> None:
        """Let the child exit once it has done its orders."""
        with contextlib.suppress(OSError):
            self.connection.send(None)

    def warm_up_program(self) -> bytes | None:
        """The program the child exported to warm up (its first message), for the parent to load once
        (compiler.warm_up); None if the child is gone before it."""
        try:
            message = self.connection.recv()
        except (EOFError, OSError):
            return None
        return message if isinstance(message, bytes) else None

    def finished(self) -> Iterator[str]:
        """The job id of each spec the child has run to a finished state, as it does; ends when the child
        is gone (stopped, closed, or dead). Its warm-up program, if not taken before, is skipped."""
        while True:
            try:
                message = self.connection.recv()
            except (EOFError, OSError):
                return
            if isinstance(message, str):
                yield message

    def close(self) -> None:
        """Stop the child, whatever it is doing (a job it leaves unfinished resumes at its next request)."""
        if self.process.is_alive():
            self.process.terminate()
        self.process.join()
        self.connection.close()
