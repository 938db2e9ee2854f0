"""``scot spec``: validate a pipeline spec, list the shipped ones."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from scot_data.cli.common import reports_input_errors

spec_app = typer.Typer(help="Pipeline specs.", no_args_is_help=True)
SPEC_HELP = "a shipped spec's name (demo, coco-290k: scot spec list) or a spec YAML file"


@spec_app.command("check")
@reports_input_errors
def spec_check(spec: Path = typer.Argument(..., help=SPEC_HELP)) -> None:
    """Validate a spec and print it with every default filled in."""
    from scot_data.spec import load_spec


    pipeline = load_spec(spec)
    typer.echo(json.dumps(pipeline.model_dump(mode="json"), indent=2))


@spec_app.command("list")
@reports_input_errors
def spec_list() -> None:
    """The specs, ablation files and prompt templates the package ships, each usable by its
    name from any folder (scot run demo, scot ablate demo, --prompt scenes-v1), and where
    it lies (copy it to make your own)."""
    from scot_data.config_files import SHIPPED_FOLDERS, shipped_files

    for kind in SHIPPED_FOLDERS:
        for name, path in shipped_files(kind).items():
            typer.echo(f"{kind:16} {name:10} {path}")
