"""Python's cyclic garbage collector around a training process's start-up.

Importing torch (and torch._dynamo, which torch.optim and torch.export pull in) and building a run make
a few million objects that live as long as the process. While they are made, each full collection walks
all of them again (about 0.5 s of CPU per start-up here), and at exit the interpreter's last collection
walks them once more (about 1 s of CPU, 2 s of wall time under load). So a process that trains pauses the
collector while it starts up and, once built, freezes what exists (`gc.freeze`: moved to a permanent
generation no collection scans, the final one included) and resumes collecting what training makes.
Nothing is lost: objects are still freed when their reference count drops to zero; only reference cycles
made before the freeze and dropped later stay allocated, and a built run drops next to none.

    pause()      # before the imports
    ...          # import, build
    settle()     # built: freeze what exists, collect again from here
"""

from __future__ import annotations

import gc


def pause() -> None:
    """Stop automatic collection until `settle` (or `resume`)."""
    gc.disable()


def settle() -> None:
    """Freeze every object that exists now and collect automatically again."""
    gc.freeze()
    gc.enable()


def resume() -> None:
    """Collect automatically again without freezing (a start-up that failed before it was built)."""
    gc.enable()
