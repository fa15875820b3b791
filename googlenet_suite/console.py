"""What every command shares with the terminal: the usage error (exit 2), a progress line on stderr,
and output files that are complete or absent."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Callable

from .files import atomic_write


class UsageError(ValueError):
    """Bad command-line input (exit code 2)."""


def write_file(path: Path, write: Callable[[str], None]) -> None:
    """``atomic_write`` into an existing directory; a missing one is a usage error, not a traceback."""
    path = Path(path)
    if not path.parent.exists():
        raise UsageError(f"{path}: directory {path.parent} does not exist")
    atomic_write(path, write)


def progress():
    """A status line on stderr while frameworks import and models build."""
    from rich.console import Console

    console = Console(stderr=True)
    if not console.is_terminal:
        def say(message):
            print(f"... {message}", file=sys.stderr, flush=True)
            return contextlib.nullcontext()
        return say

    @contextlib.contextmanager
    def say(message):
        with console.status(message):
            yield
    return say
