"""Files written whole or not at all: a reader (a resumed run, another process) never sees half of one.

Written to a temporary name beside the target, then renamed: `os.replace` is atomic on one file system.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def write_json_atomic(path: str | os.PathLike, data, indent: int = 1) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=indent, default=str))
    os.replace(tmp, path)
    return path
