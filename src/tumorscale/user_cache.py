"""The user cache folder: derived data tumorscale can make again (downloads, lesion statistics),
never inside a dataset. (The preprocessed training cache is `tumorscale.data.cache`, elsewhere.)"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "TUMORSCALE_CACHE_DIR"


def user_cache_dir(*parts: str) -> Path:
    """The cache folder (created if needed), with `parts` naming a sub-folder.

    `$TUMORSCALE_CACHE_DIR`, else `$XDG_CACHE_HOME/tumorscale`, else `~/.cache/tumorscale`.
    """
    root = os.environ.get(CACHE_ENV)
    if root:
        base = Path(root)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg) if xdg else Path.home() / ".cache") / "tumorscale"
    folder = base.joinpath(*parts)
    folder.mkdir(parents=True, exist_ok=True)
    return folder
