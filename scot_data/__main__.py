"""``python -m scot_data`` is the ``scot`` command."""

from scot_data.cli import app

app()
