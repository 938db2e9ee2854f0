"""Errors the CLI turns into a one-line reason and exit code 2."""


class ScotInputError(Exception):
    """Input the user must fix (missing path, unknown format, invalid spec): names what and where."""


class StageIncomplete(Exception):
    """Some batches could not be answered; finished parts are kept and a re-run resumes."""


class ServerError(RuntimeError):
    """The server could not be started, died, or never became healthy."""
