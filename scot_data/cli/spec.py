"""``scot spec``: validate a pipeline spec."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from scot_data.cli.common import reports_input_errors

spec_app = typer.Typer(help="Pipeline specs.", no_args_is_help=True)


@spec_app.command("check")
@reports_input_errors
def spec_check(spec: Path = typer.Argument(..., help="pipelines/<name>.yaml")) -> None:
    """Validate a spec and print it with every default filled in."""
    from scot_data.spec import load_spec


    pipeline = load_spec(spec)
    typer.echo(json.dumps(pipeline.model_dump(mode="json"), indent=2))
