"""What every command shares with the terminal: the usage error (exit 2), a progress line on stderr,
and output files that are complete or absent."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Callable

from shared_spec.errors import InputError
from shared_spec.files import atomic_write


class UsageError(InputError):
    """Bad command-line input (exit code 2)."""


def check_output(path: Path, option: str = "--output") -> Path:
    """An output file that can be written: its directory exists, and it is not itself a directory."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{option} {path}: is a directory, expected a file name")
    if not path.parent.is_dir():
        raise InputError(f"{option} {path}: directory {path.parent} does not exist")
    return path


def write_file(path: Path, write: Callable[[str], None], option: str = "--output") -> None:
    """``atomic_write`` after ``check_output``: a bad path is a usage error, never a traceback."""
    atomic_write(check_output(path, option), write)


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
