"""Child process of the crash tests: compiles one job and hangs at a chosen point until it is killed.

python -m tests.blueprints.compile_child DATA_DIR during_compile|after_write
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from domains.tezzeret.compiler import compile_artifact
from domains.tezzeret.jobs import CompileSpec
from domains.tezzeret.service import Tezzeret
from domains.urza.library import ArtifactLibrary
from eventstore import open_store
from leyline.datadir import DataDir
from tests.blueprints.test_crash import SPEC


def main() -> None:
    torch.set_num_threads(1)
    data_dir, moment = Path(sys.argv[1]), sys.argv[2]
    store = open_store(DataDir(data_dir).log, fsync="always")
    library = ArtifactLibrary(DataDir(data_dir).artifacts, store)

    def hang(job_id: str, attempt: int) -> None:
        (data_dir / "reached").write_text(f"{job_id} {attempt}")
        time.sleep(600)

    def compile_then_hang(spec: CompileSpec) -> bytes:
        library.put(compile_artifact(spec))
        hang(spec.job_id, 1)
        raise AssertionError("the parent kills this process while it hangs")

    if moment == "during_compile":
        tezzeret = Tezzeret(store, library, failure_hook=hang)
    else:
        tezzeret = Tezzeret(store, library, compile_fn=compile_then_hang)
    tezzeret.compile(SPEC)


if __name__ == "__main__":
    main()
