"""The registries (issue 14): one declaration per triplet backend, semantic filter and caption
format; the config models, CLI flags and help, and the readers follow from it."""

from __future__ import annotations

import typer
from pydantic import TypeAdapter

from scot_data import stages
from scot_data.captions.config import CAPTION_FORMATS, FORMATS, CaptionsConfig
from scot_data.captions.readers import READERS
from scot_data.cli import app
from scot_data.triplets.config import BACKENDS, TripletsConfig
from scot_data.triplets.filters import FILTER_SPECS, FILTERS, FilterConfig, find_problems


def _command_params(group: str, name: str) -> dict[str, object]:
    command = typer.main.get_command(app).commands[group].commands[name]  # type: ignore[attr-defined]
    return {p.name: p for p in command.params}


def test_backend_registry_drives_config_and_cli() -> None:
    assert tuple(BACKENDS) == ("llm", "template")
    assert TripletsConfig.model_json_schema()["properties"]["backend"]["enum"] == list(BACKENDS)
    assert _command_params("triplets", "generate")["backend"].help == " | ".join(BACKENDS)
    assert TripletsConfig(backend="template").backend_entry is BACKENDS["template"]
    assert [b.name for b in BACKENDS.values() if b.llm] == ["llm"]


def test_filter_registry_drives_config_cli_and_order() -> None:
    names = [f.name for f in FILTER_SPECS]
    assert FILTERS == ("few_shot_copy", "repetition", "edit_words", "similarity_band")
    assert list(FilterConfig.model_fields)[: len(names)] == names
    assert all(FilterConfig.model_fields[f.name].default is f.default for f in FILTER_SPECS)
    params = _command_params("triplets", "filter")
    switches = [p for p in params.values() if getattr(p, "is_bool_flag", False) and p.secondary_opts]
    assert [p.name for p in switches] == names
    assert [(p.opts, p.secondary_opts) for p in switches] == [
        ([f.flag], [f"--no-{f.flag[2:]}"]) for f in FILTER_SPECS
    ]
    assert [(p.default, p.help) for p in switches] == [(f.default, f.description) for f in FILTER_SPECS]


def test_find_problems_follows_the_rank_order() -> None:
    row = {"caption": "a dog", "modification": "clock clock", "modified_caption": "a dog"}
    problems = find_problems(row, 0.99, FilterConfig(few_shot_copy=False), None)
    assert list(problems) == ["repetition", "edit_words", "similarity_band"]
    assert list(find_problems(row, 0.99, FilterConfig(repetition=False, few_shot_copy=False), None)) == [
        "edit_words", "similarity_band"
    ]  # fmt: skip


def test_caption_format_registry_drives_union_readers_and_help() -> None:
    assert FORMATS == ("coco", "wds", "table", "openclipart") == tuple(CAPTION_FORMATS)
    assert list(READERS) == list(CAPTION_FORMATS.values())
    for name, model in CAPTION_FORMATS.items():
        scan, inputs = READERS[model]
        assert (scan.__name__, inputs.__name__) == (f"scan_{name}", f"{name}_inputs")
        values = {"format": name, "input": "x", **({"images": "y"} if name == "coco" else {})}
        assert type(TypeAdapter(CaptionsConfig).validate_python(values)) is model
    assert _command_params("captions", "ingest")["format"].help == " | ".join(FORMATS)


def test_stage_names_are_declared_once() -> None:
    from scot_data.captions.ingest import STAGE as captions_stage
    from scot_data.embed.layout import STAGE as embed_stage
    from scot_data.fit_lit.config import STAGE as fit_lit_stage
    from scot_data.train.stage import STAGE as train_stage
    from scot_data.triplets.records import STAGE as triplets_stage

    assert (captions_stage, triplets_stage, fit_lit_stage, embed_stage, train_stage) == (
        stages.CAPTIONS, stages.TRIPLETS, stages.FIT_LIT, stages.EMBED, stages.TRAIN
    )  # fmt: skip
