"""Where contrafeat keeps caches (PCA bases): $CONTRAFEAT_CACHE, else $XDG_CACHE_HOME/contrafeat, else ~/.cache/contrafeat."""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir(kind: str) -> Path:
    """The cache folder for one kind of cached data (e.g. 'pca')."""
    root = os.environ.get("CONTRAFEAT_CACHE")
    if root is None:
        root = str(Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "contrafeat")
    return Path(root) / kind
