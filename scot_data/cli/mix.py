"""``scot mix``: a seeded, weighted sample of several finished triplet tables (the mix stage)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from scot_data.cli.common import FORCE_HELP, config_option, print_summary, reports_input_errors
from scot_data.mix.config import MixConfig


@reports_input_errors
def mix_command(
    source: list[str] = typer.Option(..., "--source", help="DIR:WEIGHT, a finished triplet directory (repeat)"),
    out: Path = typer.Option(..., "--out", help="output directory (a finished triplet table)"),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
    total: Optional[int] = config_option(MixConfig, "total"),
    seed: int = config_option(MixConfig, "seed"),
) -> None:
    """A seeded, weighted sample of several triplet directories (e.g. LLM 0.3 + template 0.7)."""
    from scot_data.mix.stage import mix_triplets, parse_source

    sources = [parse_source(s) for s in source]
    summary = mix_triplets(sources, out, total=total, seed=seed, force=force)
    print_summary(f"mixed triplets -> {out}", summary.__dict__)
