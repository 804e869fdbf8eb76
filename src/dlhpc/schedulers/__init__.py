"""Schedulers: one module each, all implementing dlhpc.schedulers.base.Backend.

REGISTRY names every backend and where its class lives; the modules are imported only when a
backend is asked for, so validating a spec never imports submitit.
"""

import importlib

REGISTRY = {
    "slurm": "dlhpc.schedulers.slurm:SlurmBackend",
    "pbs": "dlhpc.schedulers.pbs:PBSBackend",
    "local": "dlhpc.schedulers.local:LocalBackend",
}
NAMES = tuple(REGISTRY)

_instances: dict = {}


def backend(name: str):
    """The Backend for a scheduler name; an unknown name is a ValueError, never a fallback."""
    if name not in REGISTRY:
        raise ValueError(f"unknown scheduler {name!r}; known schedulers: {', '.join(NAMES)}")
    if name not in _instances:
        module, cls = REGISTRY[name].split(":")
        _instances[name] = getattr(importlib.import_module(module), cls)()
    return _instances[name]
