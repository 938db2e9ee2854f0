"""README's layout section names what is in the tree, and the tree holds what it names."""

from __future__ import annotations

import re
from pathlib import Path

from scot_data import stages
from scot_data.spec import PipelineSpec

ROOT = Path(__file__).resolve().parents[1]


def _layout() -> tuple[str, str]:
    """The stage table and the tree block of README's "## Layout" section."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    tree = section.split("```\n", 1)[1].split("```", 1)[0]
    return section, tree


def test_every_named_path_exists_and_every_package_and_ground_module_is_named():
    _, tree = _layout()
    named: set[str] = set()
    parent = ""
    for line in tree.splitlines():
        if not line.strip() or line.startswith(" " * 20):
            continue  # a continuation of the description column
        words = line.strip().split("  ")[0].split()
        top_level = not line.startswith(" ")
        for word in words:
            path = word if top_level else parent + word
            named.add(path.rstrip("/"))
        if top_level and words and words[0].endswith("/"):
            parent = words[0]
    for path in named:
        assert (ROOT / path).exists(), f"README layout names {path}, which is not in the tree"
    packages = {p.parent.relative_to(ROOT).as_posix() for p in (ROOT / "scot_data").glob("*/__init__.py")}
    assert packages <= named, f"packages missing from README's layout: {sorted(packages - named)}"
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "scot_data").glob("*.py") if p.name[0] != "_"}
    assert modules <= named, f"modules missing from README's layout: {sorted(modules - named)}"


def test_the_stage_table_matches_the_stage_names():
    section, _ = _layout()
    rows = [line.split("|")[1:-1] for line in section.splitlines() if line.startswith("| ")][1:]
    table = {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in rows}
    names = [v for k, v in vars(stages).items() if k.isupper() and isinstance(v, str)]
    assert sorted(table) == sorted(names), "one row per stage of scot_data/stages.py"
    for stage in names:
        spec_key, command, package, folder = table[stage]
        assert folder.startswith(f"`{stage}/`")
        assert package == f"`{stage.replace('-', '_')}/`" and (ROOT / "scot_data" / stage.replace("-", "_")).is_dir()
        assert re.search(rf"`scot {stage}\b", command)
        section = stage.replace("-", "_")
        assert section in spec_key or section not in PipelineSpec.model_fields
