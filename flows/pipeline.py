"""A whole pipeline spec as one Prefect flow, each configured stage a subflow.

Each subflow runs the same library stage runner as ``scot run --engine local`` (so both
skip complete stages and resume partial ones the same way), and the parent runs the same
stage loop (``run_stages``), so a live view observing the run sees both engines alike.
``scot run`` (the default ``--engine prefect``) calls ``run_spec``; ``python -m flows.pipeline
pipelines/demo.yaml`` runs ``pipeline_flow`` with Prefect's log lines as its only progress.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import prefect.server.api.server as server_module
from prefect import flow, get_run_logger
from prefect.server.api.server import SubprocessASGIServer
from prefect.settings import PREFECT_API_URL

from scot_data.pipeline import RUNNERS, StageResult, run_stages
from scot_data.spec import load_spec


@flow(name="scot-stage", flow_run_name="{stage}")
def stage_flow(spec_path: str, stage: str, show_progress: bool = False) -> dict[str, Any]:
    """One stage of the spec (its summary is the flow's result).

    No flow-level retry: bad input would fail the same way again (and a spec naming a dead
    endpoint must fail fast), transient LLM and network errors are retried inside the
    stage, and a re-run of ``scot run`` resumes whatever a failure left.
    """
    return RUNNERS[stage](load_spec(spec_path), show_progress)


@flow(name="scot-pipeline")
def pipeline_flow(spec_path: str, show_progress: bool = False) -> list[StageResult]:
    """Run the spec's stages in order, each as a ``scot-stage`` subflow."""
    spec = load_spec(spec_path)
    results = run_stages(spec, lambda stage: stage_flow(spec_path, stage, show_progress))
    logger = get_run_logger()
    for result in results:
        logger.info("stage %s: %s in %.1f s %s", result.stage, result.status, result.seconds, result.counts)
    return results


# Run by the server's Python before uvicorn: ask Linux for SIGTERM when the parent (``scot
# run``'s main thread, which starts the server) dies, then become uvicorn. A parent gone
# before the request was made is caught by the getppid check.
_DIE_WITH_PARENT = """
import ctypes, os, sys
ctypes.CDLL(None, use_errno=True).prctl(1, 15)  # PR_SET_PDEATHSIG, SIGTERM
if os.getppid() != int(sys.argv[1]):
    sys.exit(0)
os.execv(sys.argv[2], sys.argv[2:])
"""


class _OwnSessionSubprocess:
    """Prefect's server module's view of ``subprocess``, with every ``Popen`` in a new
    session and, on Linux, ended with its parent."""

    def __getattr__(self, name: str) -> Any:
        return getattr(subprocess, name)

    @staticmethod
    def Popen(args: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
        if sys.platform == "linux":
            args = [sys.executable, "-c", _DIE_WITH_PARENT, str(os.getpid()), *args]
        return subprocess.Popen(args, start_new_session=True, **kwargs)


@contextmanager
def _popen_in_own_session() -> Iterator[None]:
    server_module.subprocess = _OwnSessionSubprocess()  # type: ignore[assignment]
    try:
        yield
    finally:
        server_module.subprocess = subprocess


class _OwnSessionServer(SubprocessASGIServer):
    """Prefect's temporary API server, started in a session of its own.

    Ctrl-C at a terminal signals the whole foreground process group. Started by Prefect,
    the temporary server is in ``scot run``'s group and dies with the interrupt, and the
    engine then retries its crash reports against a dead API for minutes instead of
    unwinding. Outside the group it lives on until Prefect stops it at exit, or (Linux) until
    ``scot run`` dies, ``kill -9`` included: issue 16's drill found one server left per kill.
    """

    def _run_uvicorn_command(self) -> subprocess.Popen[Any]:
        with _popen_in_own_session():
            return super()._run_uvicorn_command()


def start_temporary_server() -> None:
    """Start the temporary server Prefect would start anyway (no ``PREFECT_API_URL``), but
    in its own session. Registered under Prefect's default key (as ``prefect_test_harness``
    does), it is the one every Prefect client in this process then uses."""
    if PREFECT_API_URL.value() or None in SubprocessASGIServer._instances:
        return
    _OwnSessionServer().start()


def run_spec(spec_path: str, show_progress: bool = True) -> list[StageResult]:
    """``scot run --engine prefect``: the parent flow, against ``PREFECT_API_URL`` when set
    (the run shows in that server's UI), else against a temporary server."""
    start_temporary_server()
    return pipeline_flow(spec_path, show_progress)


if __name__ == "__main__":
    pipeline_flow(sys.argv[1])
