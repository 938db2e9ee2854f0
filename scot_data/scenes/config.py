"""The scenes stage's settings (light: no images, no tables)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from scot_data.clipart.config import KINDS, EditKind

# Options added after the first builds: counted in the fingerprint only when set.
LATER_OPTIONS = ("edits_per_scene", "render_targets")


class ScenesConfig(BaseModel):
    """How many scenes, and how they vary."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    count: int = Field(4000, ge=1, description="reference scenes")
    edits_per_scene: int = Field(1, ge=1, le=8, description="template edits of each scene (distinct targets)")
    render_targets: bool = Field(False, description="render each edit's target scene too (target_image_id)")
    kinds: tuple[EditKind, ...] = KINDS
    background_share: float = Field(0.3, ge=0.0, le=1.0, description="share of references on a colour")
    max_name_words: int = Field(3, ge=1)
    known_words: bool = Field(True, description="only names whose words the text tower's vocabulary holds")
    seed: int = 0

    def fingerprint_config(self) -> dict[str, object]:
        """The options that decide the output. Those added after the first builds count only
        when set, so a finished build of the same scenes stays finished (and so does all
        that was trained from it)."""
        defaults = type(self).model_fields
        later = {name for name in LATER_OPTIONS if getattr(self, name) == defaults[name].default}
        return self.model_dump(mode="json", exclude=later)
