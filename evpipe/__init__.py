"""evpipe: the shared runtime of the pipeline (CLI, settings, client factories)."""

__version__ = "0.1.0"
