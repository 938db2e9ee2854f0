"""Readers: one per input format, each turning a collection into candidates and rejects.

A reader only reads metadata; checking that images decode is the worker's job, so a
reader over a large collection is fast and its output order is deterministic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from scot_data.captions.config import CocoCaptions, OpenclipartCaptions, TableCaptions, WdsCaptions
from scot_data.captions.readers.coco import coco_inputs, scan_coco
from scot_data.captions.readers.openclipart import openclipart_inputs, scan_openclipart
from scot_data.captions.readers.table import scan_table, table_inputs
from scot_data.captions.readers.wds import scan_wds, wds_inputs
from scot_data.captions.records import Candidate, Reject
from scot_data.manifest import InputRef

Scan = Callable[..., Iterator[Candidate | Reject]]
Inputs = Callable[..., list[InputRef]]

READERS: dict[type, tuple[Scan, Inputs]] = {
    CocoCaptions: (scan_coco, coco_inputs),
    WdsCaptions: (scan_wds, wds_inputs),
    TableCaptions: (scan_table, table_inputs),
    OpenclipartCaptions: (scan_openclipart, openclipart_inputs),
}
