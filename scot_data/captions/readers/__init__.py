"""Readers: one per input format, each turning a collection into candidates and rejects.

One module per format in :data:`~scot_data.captions.config.CAPTION_FORMATS`, named after
it. A reader only reads metadata; checking that images decode is the worker's job, so a
reader over a large collection is fast and its output order is deterministic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from importlib import import_module

from scot_data.captions.config import CAPTION_FORMATS
from scot_data.captions.records import Candidate, Reject
from scot_data.manifest import InputRef

Scan = Callable[..., Iterator[Candidate | Reject]]
Inputs = Callable[..., list[InputRef]]


def _reader(name: str) -> tuple[Scan, Inputs]:
    """``readers/<name>.py``'s ``scan_<name>`` and ``<name>_inputs``."""
    module = import_module(f"{__name__}.{name}")
    return getattr(module, f"scan_{name}"), getattr(module, f"{name}_inputs")


READERS: dict[type, tuple[Scan, Inputs]] = {model: _reader(name) for name, model in CAPTION_FORMATS.items()}
