"""The fsync policy of the file store's writer and its OS-level helpers: preallocation and the typed
error for a full disk."""

from __future__ import annotations

import ctypes
import ctypes.util
from dataclasses import dataclass
from typing import Any, Literal, NoReturn

from eventstore.api import DISK_FULL_ERRNOS, DiskFull

FALLOC_FL_KEEP_SIZE = 1


@dataclass(frozen=True)
class FsyncPolicy:
    kind: Literal["always", "batch", "interval"]
    interval_s: float = 0.0

    @classmethod
    def parse(cls, text: str) -> FsyncPolicy:
        if text in ("always", "batch"):
            return cls(text)  # type: ignore[arg-type]
        if text.startswith("interval:"):
            try:
                milliseconds = float(text.split(":", 1)[1])
            except ValueError:
                milliseconds = -1.0
            if milliseconds > 0:
                return cls("interval", milliseconds / 1000)
        raise ValueError(f"fsync policy must be 'always', 'batch' or 'interval:<ms>' (ms > 0), got {text!r}")

    def __str__(self) -> str:
        return f"interval:{self.interval_s * 1000:g}" if self.kind == "interval" else self.kind


def preallocator() -> Any:
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return None
    function = ctypes.CDLL(libc_name, use_errno=True).fallocate
    function.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong]
    return function


def raise_typed(error: OSError, path: str) -> NoReturn:
    """Raise DiskFull for an out-of-space error while writing path, any other error as it is."""
    if error.errno in DISK_FULL_ERRNOS:
        raise DiskFull(path) from error
    raise error
