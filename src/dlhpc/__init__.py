"""dlhpc: YAML experiment specs -> SLURM/PBS batch jobs -> DDP training -> tables.

The Python API (docs/api.md): dlhpc.submit, dlhpc.validate, dlhpc.load, dlhpc.experiments and the Experiment
they return. Imported on first use, so `import dlhpc` stays as light as the CLI.
"""

from dlhpc._version import __version__  # noqa: F401

_API = ("submit", "validate", "load", "experiments", "Experiment", "Status", "Summary")
_ERRORS = ("UserError", "DlhpcError")


def __getattr__(name):
    if name in _API:
        from dlhpc import api

        return getattr(api, name)
    if name in _ERRORS:
        from dlhpc import errors

        return getattr(errors, name)
    raise AttributeError(f"module 'dlhpc' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_API, *_ERRORS])
