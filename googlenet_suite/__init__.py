"""googlenet-suite's harness and CLI: compare, run and benchmark the three builders."""

from shared_spec import __version__

__all__ = ["__version__"]
