"""``scot`` with the tiny test encoder registered: the process the failure drills kill.

Run: ``python tests/drill_scot.py <scot arguments>`` (the repository root on PYTHONPATH).
The drills need a real process (``kill -9`` ends it, a file-size limit applies to it), and
that process must know ``tests.conftest.TINY``, an open_clip architecture registered at run
time, so ``scot`` itself cannot be used. Two environment variables change the conditions,
never the code under test:

- ``DRILL_SLOW_DIR`` / ``DRILL_SLOW_SECONDS``: every atomic rename (``os.replace``) into that
  folder first sleeps, so a stage on tiny data lasts long enough for a kill to land in its
  middle, most often while a temporary file is open;
- ``DRILL_MAX_FILE_BYTES``: ``RLIMIT_FSIZE`` for the run, so writing a larger file fails
  half-way with ``OSError: [Errno 27] File too large`` (Python ignores SIGXFSZ), as a full
  disk would with ENOSPC. It is set after the imports, so only the stage's writes meet it.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.conftest import TINY, TINY_CONFIG


def register_tiny_encoder() -> None:
    """Make ``open_clip:<TINY>`` known to this process, as the ``tiny_spec`` fixture does."""
    import open_clip

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / f"{TINY}.json"
        path.write_text(json.dumps(TINY_CONFIG))
        open_clip.add_model_config(path)


def slow_renames_into(directory: str, seconds: float) -> None:
    """Delay every ``os.replace`` whose destination lies under ``directory``."""
    rename = os.replace

    def slow_replace(src: Any, dst: Any, **kwargs: Any) -> None:
        if str(dst).startswith(directory):
            time.sleep(seconds)
        rename(src, dst, **kwargs)

    os.replace = slow_replace


def main() -> None:
    register_tiny_encoder()
    from scot_data.cli import app

    if "DRILL_SLOW_DIR" in os.environ:
        slow_renames_into(os.environ["DRILL_SLOW_DIR"], float(os.environ.get("DRILL_SLOW_SECONDS", "0.3")))
    if "DRILL_MAX_FILE_BYTES" in os.environ:
        limit = int(os.environ["DRILL_MAX_FILE_BYTES"])
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    app(args=sys.argv[1:], prog_name="scot")


if __name__ == "__main__":
    main()
