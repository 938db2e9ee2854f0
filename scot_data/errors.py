"""Errors the CLI turns into a one-line reason and exit code 2."""


class ScotInputError(Exception):
    """Input the user must fix (missing path, unknown format, invalid spec): names what and where."""
