"""Result folders of the benchmarks: ``<results_dir>/<stamp>/`` with report.md, summary.json, table.csv."""
import csv
import io
import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Sequence

from utils.io import atomic_write_bytes, atomic_write_text

log = logging.getLogger(__name__)


def write_table(rows: List[Dict[str, Any]], path: Path) -> None:
    """CSV with the union of the rows' keys as header (atomic)."""
    fields: List[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def markdown_table(rows: Sequence[Dict[str, Any]], columns: Sequence[str]) -> str:
    """A markdown table of ``rows`` restricted to ``columns`` (floats with 4 significant digits)."""
    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def write_summary(summary: Dict[str, Any], path: Path) -> None:
    atomic_write_text(path, json.dumps(summary, indent=2, default=str))


def pyplot(figure_name: str):
    """matplotlib.pyplot on the Agg backend, or None (with a warning naming the figure) when it is not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no %s (pip install matplotlib)", figure_name)
        return None
    return plt


def save_figure(fig, path: Path) -> None:
    """Write a matplotlib figure as PNG (atomic) and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
