"""googlenet-suite's harness and CLI: compare, run and benchmark the three builders."""

__all__ = ["__version__"]


def __getattr__(name: str):
    # the version read when asked: importing a module of the suite (scripts/gpu-check's entry point) imports
    # no shared_spec, so a missing jsonschema is the GPU check's one line, not a traceback
    if name == "__version__":
        from shared_spec import __version__

        return __version__
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
