"""Stage names: one name per stage for its spec section, its CLI command, its package, the
folder it writes under a run's ``out`` and the ``stage`` its manifest records."""

from __future__ import annotations

CAPTIONS = "captions"
SCENES = "scenes"
TRIPLETS = "triplets"
MIX = "mix"
FIT_LIT = "fit-lit"
EMBED = "embed"
TRAIN = "train"
EVALUATE = "evaluate"
EXPORT = "export"
