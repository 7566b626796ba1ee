"""One way to write a file others read: whole, to a temporary name of this writer's own in the same folder, then
renamed over the target. A half-written file never looks like a result, and processes writing the same file at once
(the jobs of a local sweep unpacking one dataset, building one cache) each rename a whole file; the last one stays.
A shared temporary name let one job rename another's file away, and the other died on FileNotFoundError."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path


def write_via(path: Path, write: Callable[[Path], None]) -> None:
    """`write(tmp)` writes the whole file at tmp; it then replaces `path`, or nothing is left if it raised."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
