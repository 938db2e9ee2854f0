"""Where a flow's tasks run: threads of the flow's own process, or Dask worker processes.

A flow is defined once, with its default (thread) runner; ``on_runner`` returns the same
flow with a Dask runner, so scale-out is a per-run choice (a CLI flag, a deployment
parameter) and not a second copy of the flow. ``dask_workers`` starts a local cluster of
that many single-threaded worker processes for the run; ``dask_address`` joins a running
scheduler instead (``dask scheduler`` plus ``dask worker`` on other machines), which also
saves the workers' start-up on every run.
"""

from __future__ import annotations

import argparse
from typing import Any, Literal, ParamSpec, TypeVar, get_args

from prefect import Flow
from prefect.task_runners import TaskRunner

RunnerKind = Literal["threads", "dask"]
P = ParamSpec("P")
R = TypeVar("R")


def _local_cluster(**kwargs: Any) -> Any:
    """A LocalCluster whose workers may start processes of their own.

    Dask makes worker processes daemonic by default, and a daemonic process may not start
    children, so the embedding tasks' DataLoader decoders could not run there.
    """
    import dask
    from distributed import LocalCluster

    with dask.config.set({"distributed.worker.daemon": False}):
        return LocalCluster(**kwargs)


def dask_runner(workers: int = 2, address: str | None = None) -> TaskRunner[Any]:
    """A Dask task runner: a local cluster of ``workers`` processes, or the one at ``address``."""
    from prefect_dask import DaskTaskRunner

    if address:
        return DaskTaskRunner(address=address)
    if workers < 1:
        raise ValueError(f"dask_workers must be at least 1, not {workers}")
    return DaskTaskRunner(
        cluster_class=_local_cluster,
        cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True},
    )


def on_runner(
    flow: Flow[P, R],
    task_runner: RunnerKind = "threads",
    dask_workers: int = 2,
    dask_address: str | None = None,
) -> Flow[P, R]:
    """``flow`` itself for ``threads``; for ``dask``, the same flow with a Dask task runner."""
    if task_runner == "threads":
        return flow
    if task_runner == "dask":
        return flow.with_options(task_runner=dask_runner(dask_workers, dask_address))
    raise ValueError(f"task_runner must be 'threads' or 'dask', not {task_runner!r}")


def add_runner_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--task-runner``, ``--dask-workers`` and ``--dask-address`` options."""
    parser.add_argument(
        "--task-runner",
        choices=get_args(RunnerKind),
        default="threads",
        help="where tasks run: threads of this process, or Dask worker processes",
    )
    parser.add_argument("--dask-workers", type=int, default=2, help="local Dask worker processes (default 2)")
    parser.add_argument("--dask-address", help="join this Dask scheduler instead of starting local workers")


def runner_options(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed runner options as ``on_runner`` (and the watch flows) take them."""
    return {
        "task_runner": args.task_runner,
        "dask_workers": args.dask_workers,
        "dask_address": args.dask_address,
    }
