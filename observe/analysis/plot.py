"""A failover report as a PNG: per resource, each cluster's need if it failed against its peers' free
capacity, red where they fall short. matplotlib with the Agg backend (no display; safe in CI and cron).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Final

from observe.analysis.failover import SHORT, FailoverReport
from observe.analysis.render import when
from observe.analysis.sources import RESOURCES

__all__ = ["DPI", "figure_size_px", "write_plot"]

DPI: Final = 100
_UNITS: Final = {"cpu": ("cores", 1.0), "memory": ("GiB", float(2**30))}
_FREE, _FREE_EDGE, _OK, _SHORT = "#c7e9c0", "#41ab5d", "#2171b5", "#d7301f"


def figure_size_px(clusters: int) -> tuple[int, int]:
    """Width and height of the PNG: 1200 px wide, a bar pair of 48 px per cluster, at least 480 px."""
    return 1200, max(480, 120 + 48 * clusters)


def write_plot(report: FailoverReport, path: Path) -> tuple[int, int]:
    """Draw `report` into `path` (PNG); returns its (width, height) in pixels."""
    import logging

    import matplotlib

    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # its font-cache notices are not ours to log
    matplotlib.use("Agg")  # before pyplot is imported: never look for a display
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    clusters = list(dict.fromkeys(report.rows["cluster"]))
    width, height = figure_size_px(len(clusters))
    fig, axes = plt.subplots(1, len(RESOURCES), figsize=(width / DPI, height / DPI), dpi=DPI)
    try:
        for ax, resource in zip(axes, RESOURCES, strict=True):
            unit, scale = _UNITS[resource]
            rows = report.rows[report.rows["resource"] == resource].set_index("cluster").loc[clusters]
            ys = list(range(len(clusters)))[::-1]  # the first cluster on top, as in the table
            judged = [st in ("ok", SHORT) for st in rows["status"]]  # no bars for "no data", "no pool"
            free = [v / scale if j else 0.0 for v, j in zip(rows["peers_free"], judged, strict=True)]
            need = [v / scale if j else 0.0 for v, j in zip(rows["needed"], judged, strict=True)]
            short = [st == SHORT for st in rows["status"]]
            ax.barh(ys, free, height=0.7, color=_FREE, edgecolor=_FREE_EDGE)
            ax.barh(ys, need, height=0.3, color=[_SHORT if s else _OK for s in short])
            top = max([*free, *need, 1e-9])
            for y, status, cov, n in zip(ys, rows["status"], rows["coverage"], need, strict=True):
                note = status if status not in ("ok", SHORT) else ("∞" if math.isinf(cov) else f"{cov:.0%}")
                ax.text(max(n, 0) + top * 0.01, y + 0.22, note, va="center", fontsize=9,
                        color=_SHORT if status == SHORT else "#333333")  # fmt: skip
            ax.set_yticks(ys, clusters)
            ax.set_xlim(0, top * 1.15)
            ax.set_xlabel(unit)
            ax.set_title(f"{resource}: would the rest of its pool absorb it?")
            ax.grid(axis="x", alpha=0.3)
        handles = [
            Patch(facecolor=_FREE, edgecolor=_FREE_EDGE, label="peers' free capacity"),
            Patch(facecolor=_OK, label=f"needed if it fails (requests x{report.headroom:g}): absorbed"),
            Patch(facecolor=_SHORT, label="needed if it fails: the peers fall short"),
        ]
        fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=9, frameon=False)
        fig.suptitle(f"N-1 failover capacity at {when(report)} (labels: coverage of the need by the peers)")
        # rearranges inside the figure, leaving the legend's strip; the canvas keeps its size (no bbox_inches)
        fig.tight_layout(rect=(0, 0.06, 1, 1))
        fig.savefig(path, format="png", dpi=DPI)
    finally:
        plt.close(fig)
    return width, height
