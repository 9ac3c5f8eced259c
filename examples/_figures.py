"""Shared by the example scripts: save a Matplotlib figure as a small PNG."""

from __future__ import annotations

import io
from pathlib import Path

from matplotlib.figure import Figure


def save_png(fig: Figure, path: str | Path, dpi: int = 90) -> Path:
    """Saves ``fig`` as a PNG at ``path`` with a 256-colour palette (a fraction of the size of
    a true-colour PNG, with no visible difference for line plots); creates the directory."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    buffer.seek(0)
    with Image.open(buffer) as image:
        image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return path
