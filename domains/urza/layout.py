"""Where Urza's library keeps artifacts: `<root>/sha256/<first two hex>/<sha256>.pt2`. Torch-free, for
readers that do not open the library (a process deciding, before it imports torch, whether to compile)."""

from __future__ import annotations

from pathlib import Path


def artifact_path(root: Path, artifact_hash: str) -> Path:
    """Where the library under `root` keeps an artifact."""
    return Path(root) / "sha256" / artifact_hash[:2] / f"{artifact_hash}.pt2"


def stored_hashes(root: Path) -> list[str]:
    """The hashes of the artifacts stored under `root` (none when it does not exist yet)."""
    return sorted(path.stem for path in (Path(root) / "sha256").glob("*/*.pt2"))
