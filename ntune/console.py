"""The terminal: a rich console sized for a terminal, a file or a pipe (the CLI and the driver print with it)."""

from __future__ import annotations

from typing import Any

from rich.console import Console

LOG_WIDTH = 140  # columns when the output is a file or pipe (rich would squash tables to 80)


def make_console(**kwargs: Any) -> Console:
    """A console for ntune's output: the terminal's width, or LOG_WIDTH when writing to a file or pipe."""
    import os
    import sys

    if "width" not in kwargs and not os.environ.get("COLUMNS"):
        stream = sys.stderr if kwargs.get("stderr") else sys.stdout
        if not stream.isatty():
            kwargs["width"] = LOG_WIDTH
    return Console(**kwargs)
