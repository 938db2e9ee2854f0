"""The ``scot`` command line: one sub-command per stage, plus ``run`` for a whole spec.

Input problems (missing paths, unknown formats, invalid specs) end with exit code 2 and
one line that names the file, row or key; nothing already written is lost.

One module per stage or command group; each imports its stage's code (torch, pyarrow,
Prefect, encoders) inside the command that runs it, so ``scot --help`` and ``scot spec
check`` load only typer, rich, pydantic and the config modules.
"""

from __future__ import annotations

import typer

from scot_data.cli import ablate, embed, evaluate, export, fit_lit, mix, publish, run, scenes, train
from scot_data.cli.bench import bench_app
from scot_data.cli.captions import captions_app
from scot_data.cli.common import (
    EXIT_BAD_INPUT,
    FORCE_HELP,
    LOG_WIDTH,
    console,
    print_metric_tables,
    print_metrics,
    print_summary,
    reports_input_errors,
)
from scot_data.cli.encoder import encoder_app
from scot_data.cli.llm import llm_app
from scot_data.cli.run import PREFECT_DEFAULTS, Engine
from scot_data.cli.spec import spec_app
from scot_data.cli.triplets import triplets_app

app = typer.Typer(help="scot: composed image retrieval from image-caption collections.", no_args_is_help=True,
                  pretty_exceptions_enable=False, rich_markup_mode=None)
for name, sub_app in (("captions", captions_app), ("triplets", triplets_app), ("llm", llm_app),
                      ("encoder", encoder_app), ("spec", spec_app), ("bench", bench_app)):  # fmt: skip
    app.add_typer(sub_app, name=name)
for name, command in (("scenes", scenes.scenes_command), ("mix", mix.mix_command), ("fit-lit", fit_lit.fit_lit_command),
                      ("embed", embed.embed_command), ("verify", publish.verify_command),
                      ("publish", publish.publish_command), ("export", export.export_command),
                      ("train", train.train_command),
                      ("evaluate", evaluate.evaluate_command), ("ablate", ablate.ablate_command),
                      ("search", evaluate.search_command), ("report", evaluate.report_command),
                      ("run", run.run)):  # fmt: skip
    app.command(name)(command)

__all__ = [
    "EXIT_BAD_INPUT",
    "FORCE_HELP",
    "LOG_WIDTH",
    "PREFECT_DEFAULTS",
    "Engine",
    "app",
    "console",
    "print_metric_tables",
    "print_metrics",
    "print_summary",
    "reports_input_errors",
]
