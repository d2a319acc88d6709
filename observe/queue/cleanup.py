"""What a cluster leaves on disk under `data_dir`, and removing it once the cluster left the fleet.

    queue/<cluster>/<signal>/       its durable queues (drained first: see Collector._retire)
    read_cursors/<cluster>.json     its remote-read position
    log_cursors/<cluster>/          its Loki cursors

The embedded store (`store/`) is data, not state: it stays.
"""

from __future__ import annotations

import shutil
from pathlib import Path

__all__ = ["cluster_state_paths", "remove_cluster_state"]


def cluster_state_paths(data_dir: Path, cluster: str) -> list[Path]:
    data_dir = Path(data_dir)
    return [data_dir / "queue" / cluster, data_dir / "read_cursors" / f"{cluster}.json", data_dir / "log_cursors" / cluster]


def remove_cluster_state(data_dir: Path, cluster: str) -> list[str]:
    """Delete the cluster's queues and cursors; the paths removed. A path that cannot be removed is left
    (and not listed): the next start replays or reuses it, nothing else breaks."""
    if not cluster or "/" in cluster or cluster in (".", ".."):
        raise ValueError(f"{cluster!r} cannot name a cluster's state")
    removed: list[str] = []
    for path in cluster_state_paths(data_dir, cluster):
        try:
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
            else:
                continue
        except OSError:
            continue
        removed.append(str(path))
    return removed
