"""A live run's checkpoints: what the training thread takes, what the writer thread makes durable.

    entry = commit(trainer, epoch_events)   # take and cache now; write the file, then append
    restore(trainer, components)            # a checkpoint's components back into the live run

On a CPU run the training thread packs the live state at once (`ckpt.serialize`: the archive's bytes
and their hash): those bytes are the checkpoint's private copy, shared by the cache and the writer, so no
tensor is cloned and the writer thread, which competes with training for the interpreter, only writes
the file. On a device the training thread takes `capture`, a private copy made on the device, and the
writer thread packs it (packing there reads every tensor back to the host). The writer thread writes the
file durably and only then appends CheckpointCommitted, in one atomic append with the epoch's own events
(checkpoint.py has the format and the file's durability).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from domains.tolaria import checkpoint as ckpt
from domains.tolaria import metrics
from domains.tolaria.aggregate import event_id
from leyline import pb

if TYPE_CHECKING:
    from domains.tolaria.trainer import Trainer


def components(trainer: Trainer) -> dict[str, Any]:
    """The state a checkpoint holds, sharing the live tensors (see `capture` for a private copy)."""
    return _components(trainer, lambda value: value)


def capture(trainer: Trainer) -> dict[str, Any]:
    """`components()` as a private copy, for the cache and the writer thread: the live state (model,
    optimizer, seeds, controller) is copied; the generators' states, the data cursor and the trainer's
    own lists are built fresh by the call and shared with nothing, so they are not copied again."""
    return _components(trainer, ckpt.clone)


def _components(trainer: Trainer, private: Callable[[Any], Any]) -> dict[str, Any]:
    return {
        "model": private(trainer.model.state_dict()),
        "optimizer": private(trainer.optimizer.state_dict()),
        "rng": ckpt.capture_rng(),
        "data_cursor": {"epoch": trainer.epoch + 1, "batch": 0},
        "seeds": private(trainer.kasmina.state_dict()),
        "controller": private(dict(trainer.controller.state_dict())),
        "trainer": {
            "applied_commands": list(trainer.applied_commands),
            "epoch": trainer.epoch,
            "global_step": trainer.global_step,
            "loss_history": list(trainer.loss_history),
        },
    }


def commit(trainer: Trainer, epoch_events: Sequence[pb.EventEnvelope] = ()) -> ckpt.CachedCheckpoint:
    """Pack (on CPU) or capture, and cache now; the writer thread writes the file (packing a capture
    first), then appends CheckpointCommitted.

    The epoch's own events are appended in the same atomic append as CheckpointCommitted: a crash
    leaves either both or neither, so a resume never re-runs an epoch whose controller and seed
    events (which carry random ids) are already in the log."""
    if trainer.device.type == "cpu":
        packed = ckpt.serialize(trainer.epoch, components(trainer))
        entry = ckpt.CachedCheckpoint(trainer.epoch, serialized=packed)
    else:
        entry = ckpt.CachedCheckpoint(trainer.epoch, capture(trainer))
    trainer.cache.put(entry)
    envelope_id = event_id(trainer.run_id, trainer.generation, trainer.epoch, "CheckpointCommitted")
    run_id, data_dir = trainer.run_id, trainer.data_dir

    def write(committed_position: int) -> list[pb.EventEnvelope]:
        started = time.perf_counter()
        serialized = entry.packed()
        ckpt.write_file(data_dir, serialized)
        metrics.CHECKPOINT_WRITE_SECONDS.observe(time.perf_counter() - started)
        metrics.CHECKPOINT_BYTES.set(len(serialized.data))
        manifest = pb.CheckpointManifest(
            run_id=run_id,
            epoch=serialized.epoch,
            content_hash=serialized.sha256,
            components=serialized.components,
            log_position=committed_position,
            created_at_ms=time.time_ns() // 1_000_000,
            size_bytes=len(serialized.data),
            path=serialized.relative_path,
        )
        committed = pb.CheckpointCommitted(manifest=manifest)
        envelope = trainer.envelope("CheckpointCommitted", committed, serialized.epoch, envelope_id)
        return [*epoch_events, envelope]

    trainer.sink.submit(write)
    return entry


def restore(trainer: Trainer, components: dict[str, Any]) -> None:
    trainer.kasmina.load_state_dict(components["seeds"])  # re-grafts seeds before the host's weights
    trainer.model.load_state_dict(components["model"])
    trainer.optimizer.load_state_dict(components["optimizer"])
    ckpt.restore_rng(components["rng"])
    trainer.controller.load_state_dict(components["controller"])
    state = components["trainer"]
    trainer.epoch = int(state["epoch"])
    trainer.global_step = int(state["global_step"])
    trainer.loss_history = [float(x) for x in state["loss_history"]]
    trainer.applied_commands = [str(x) for x in state["applied_commands"]]
