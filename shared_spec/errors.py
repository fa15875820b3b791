"""The suite's exceptions have one root, so that a caller can tell the suite's errors from everything else.

- :class:`SuiteError`: every exception class the suite defines derives from it (``tests/test_layout.py``
  checks this from the source).
- :class:`InputError`: bad input given to a library function (a file, an option value). The CLI turns it
  into one line and exit code 2. It is a ``ValueError`` as well, so ``except ValueError`` keeps working.

Imports nothing.
"""

from __future__ import annotations


class SuiteError(Exception):
    """The root of every exception the suite defines."""


class InputError(SuiteError, ValueError):
    """Bad input given to a library function: a file, an option value; the CLI turns it into one line, exit 2."""


__all__ = ["InputError", "SuiteError"]
