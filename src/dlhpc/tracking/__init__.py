"""What a trial's files say, in the tools people already use: TensorBoard event files written on
the node while it runs (events.py) and served from the login node (board.py); MLflow and W&B
runs written from the login node, one run per trial (export/). metrics.jsonl stays the one
record; each of these is rebuilt from it, so a requeued trial is still one run. docs/tracking.md.
"""

INSTALL = "pip install 'dlhpc[tracking]'"


def has(package: str) -> bool:
    """Whether `package` imports in this Python (the one the jobs start too)."""
    import importlib

    try:
        importlib.import_module(package)
    except ImportError:
        return False
    return True
