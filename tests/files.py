"""What the tests that read files share: where the shared data sets are, and writing a test
file plain or gzip-compressed."""

from __future__ import annotations

import gzip
from pathlib import Path

# ../shared/data beside the repository; the tests that read it skip when it is absent
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` as UTF-8, gzip-compressed when the name ends in ``.gz``."""
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path
