"""Serve scot's Prefect deployments from this process: one on demand, two on a schedule.

* ``scot-pipeline`` runs the whole spec (``flows/pipeline.py``), every section of it, when
  asked (``prefect deployment run scot-pipeline/scot-pipeline`` or the UI's "Run" button);
* ``scot-triplets-watch`` runs every ``--every`` seconds: each new finished caption
  directory under ``--captions-root`` gets triplets under ``OUT_ROOT/triplets``;
* ``scot-embed-watch`` runs on the same interval: each new finished triplet directory
  there gets embeddings under ``OUT_ROOT/embed`` (with its captions).

So new caption files become triplets on one tick and embeddings on the next. What the
watches do **not** do: they read only the spec's ``triplets:`` and ``embed:`` sections.
They compose no scenes (``scenes:``; the triplets are of the captions as they are), mix no
sources (``mix:``), fit no LiT heads (``embed.fit_lit``: the encoder is used as named),
start no LLM server (``triplets.serve``: the endpoints must be up), and neither train nor
evaluate. ``main`` says which of these a spec sets. A watch deployment runs one at a time,
so a slow run is not overtaken by the next tick. ``tests/test_serve_live.py`` serves them
against a real ``prefect server start`` and triggers them with ``prefect deployment run``.

Run: ``python -m flows.serve --captions-root DIR --out-root DIR --spec pipelines/demo.yaml
--every 600 [--image-shards N] [--task-runner dask --dask-workers 2 | --dask-address HOST:PORT]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from prefect import serve
from prefect.deployments.runner import RunnerDeployment

from flows.embed import embed_watch_flow
from flows.pipeline import pipeline_flow
from flows.runners import add_runner_arguments, runner_options
from flows.triplets import triplets_watch_flow
from scot_data import stages
from scot_data.embed.config import EmbedConfig
from scot_data.spec import PipelineSpec, load_spec
from scot_data.triplets.config import TripletsConfig


def watch_configs(spec: PipelineSpec) -> tuple[dict[str, Any], dict[str, Any]]:
    """The triplet and embedding configs the watches use, from the spec (defaults if absent)."""
    triplets = spec.triplets or TripletsConfig()
    embed = spec.embed or EmbedConfig()
    return triplets.model_dump(mode="json"), embed.model_dump(mode="json")


WATCHES_SKIP = ("scenes", "mix", "train", "evaluate")


def ignored_by_watches(spec: PipelineSpec) -> list[str]:
    """The spec's settings the watch deployments do not apply (``scot-pipeline`` does)."""
    ignored = [f"{name}:" for name in WATCHES_SKIP if getattr(spec, name) is not None]
    if spec.embed is not None and spec.embed.fit_lit:
        ignored.append("embed.fit_lit")
    if spec.triplets is not None and spec.triplets.serve is not None:
        ignored.append("triplets.serve")
    return ignored


def deployments(
    captions_root: str | Path,
    out_root: str | Path,
    spec_path: str | Path,
    every: int = 600,
    image_shards: int = 1,
    runner: dict[str, Any] | None = None,
) -> list[RunnerDeployment]:
    """The three deployments (paths made absolute: runs start in the serving process's
    working directory, which need not be the one the command was typed in)."""
    spec_file = Path(spec_path).resolve()
    triplets_config, embed_config = watch_configs(load_spec(spec_file))
    captions, out = str(Path(captions_root).resolve()), Path(out_root).resolve()
    runner = runner or {}
    return [
        pipeline_flow.to_deployment(name="scot-pipeline", parameters={"spec_path": str(spec_file)}),
        triplets_watch_flow.to_deployment(
            name="scot-triplets-watch",
            interval=every,
            concurrency_limit=1,
            parameters={
                "captions_root": captions,
                "out_root": str(out / stages.TRIPLETS),
                "config": triplets_config,
                **runner,
            },
        ),
        embed_watch_flow.to_deployment(
            name="scot-embed-watch",
            interval=every,
            concurrency_limit=1,
            parameters={
                "captions_root": captions,
                "triplets_root": str(out / stages.TRIPLETS),
                "out_root": str(out / stages.EMBED),
                "config": embed_config,
                "image_shards": image_shards,
                **runner,
            },
        ),
    ]


def main(argv: list[str] | None = None) -> None:
    """Parse the options and serve until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m flows.serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--captions-root", required=True, help="watched for finished caption directories")
    parser.add_argument("--out-root", required=True, help="triplets/ and embeddings/ are written under it")
    parser.add_argument(
        "--spec", required=True, help="pipeline spec: scot-pipeline's input, the watches' options"
    )
    parser.add_argument("--every", type=int, default=600, help="seconds between watch runs (default 600)")
    parser.add_argument("--image-shards", type=int, default=1, help="image tasks per embedding run")
    add_runner_arguments(parser)
    args = parser.parse_args(argv)
    found = deployments(
        args.captions_root, args.out_root, args.spec, args.every, args.image_shards, runner_options(args)
    )
    ignored = ignored_by_watches(load_spec(args.spec))
    if ignored:
        print(f"flows.serve: the watches ignore the spec's {', '.join(ignored)} (they make triplets and "
              "embeddings of each new caption folder); scot-pipeline runs the whole spec", file=sys.stderr)  # fmt: skip
    serve(*found)


if __name__ == "__main__":
    main()
