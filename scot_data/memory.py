"""Handing memory that a finished stage freed back to the system before the next one starts.

``scot run`` runs every stage in one process. A stage's freed memory stays with the process
unless something returns it: glibc's malloc keeps freed heap below its top, and Arrow's
allocator keeps freed buffers for reuse. At issue 16's 290K x 768 scale, the train stage
started 1.6 GiB into the process after captions, triplets and embed had run (0.8 GiB fresh),
and releasing at each boundary brought that to 1.3 GiB and the stage's peak from 5.5 to
5.3 GiB (``BENCHMARKS.md``, "The Combiner at 768-d"). What stays is live Python objects and
partly used pymalloc arenas, which only a process of its own would give back.
"""

from __future__ import annotations

import ctypes
import gc
import sys


def release_freed_memory() -> None:
    """Collect garbage, then return free memory from Arrow's pool (when pyarrow is loaded)
    and from glibc's heap (``malloc_trim``; a no-op elsewhere)."""
    gc.collect()
    if "pyarrow" in sys.modules:
        sys.modules["pyarrow"].default_memory_pool().release_unused()
    _malloc_trim()


def _malloc_trim() -> None:
    """The process's own C library, as ``flows/pipeline.py`` reaches ``prctl``: looking libc
    up by name (``ctypes.util.find_library``) runs ``ldconfig`` in a subprocess each time."""
    if not sys.platform.startswith("linux"):
        return
    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)
    if trim is not None:  # glibc only (musl has none)
        trim(0)
