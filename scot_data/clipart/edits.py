"""What an edit does to a scene: the one definition of replace, add, remove, background and
recolour, used by the benchmark's queries and the training scenes' triplets alike."""

from __future__ import annotations

from scot_data.clipart.config import EditKind
from scot_data.clipart.scene import ClipartObject, Placed, Scene


def apply_edit(reference: Scene, kind: EditKind, i: int, added: ClipartObject, y: str) -> Scene:
    """The scene ``kind`` makes of ``reference``: its item ``i`` replaced by ``added``,
    recoloured ``y`` or removed; ``added`` appended; or the background set to ``y``."""
    changed = list(reference.items)
    if kind == "replace":
        changed[i] = Placed(added)
    elif kind == "recolour":
        changed[i] = Placed(changed[i].obj, y)
    elif kind == "remove":
        del changed[i]
    elif kind == "add":
        changed.append(Placed(added))
    return Scene(tuple(changed), y if kind == "background" else reference.background)
