"""Figures written to PNG files (learning curves, reliability diagrams), drawn off-screen."""
from __future__ import annotations

from pathlib import Path
from typing import Any


def panels(n: int, size_in: tuple[float, float]) -> tuple[Any, list[Any]]:
    """A figure of `n` side-by-side axes, each `size_in` (width, height) inches, on the off-screen backend."""
    import matplotlib

    matplotlib.use("Agg")  # no display on a server; set before pyplot is imported
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, n, figsize=(size_in[0] * n, size_in[1]), squeeze=False)
    return fig, list(axes[0])


def save(fig: Any, path: str | Path, title: str) -> Path:
    """Title the figure, write it to `path` (PNG, 90 dpi) and free it."""
    import matplotlib.pyplot as plt

    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
