"""Where bertcls keeps caches: $BERTCLS_CACHE, else ~/.cache/bertcls."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root(*parts: str) -> Path:
    root = os.environ.get("BERTCLS_CACHE") or Path.home() / ".cache" / "bertcls"
    path = Path(root).joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
