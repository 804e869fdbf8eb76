"""The small jobs the scheduler starts after an experiment's jobs have ended (afterany): the
report job (resources.report) and the recovery job (resources.retry.automatic). Each is one line
of this Python running dlhpc itself: no code of the user's runs in it."""

import shlex
import shutil
import sys
from pathlib import Path


def write_script(exp_dir: Path, name: str, purpose: str, args: list[str], submit_command: str | None) -> Path:
    """EXP/<name>: this Python with `args` (e.g. -m dlhpc summary EXP --save). A compute node's
    PATH may lack the scheduler's commands (or find another tool's), so the folder they were found
    in on the login node comes first."""
    from dlhpc.fsutil import atomic_write_text, private_mode

    tool = shutil.which(submit_command) if submit_command else None
    lines = ["#!/bin/bash", f"# Written by dlhpc: {purpose}"]
    if tool:
        lines.append(f'export PATH={shlex.quote(str(Path(tool).parent))}:"$PATH"')
    lines.append(f"exec {shlex.quote(sys.executable)} {' '.join(shlex.quote(str(a)) for a in args)}")
    path = exp_dir / name
    atomic_write_text(path, "\n".join(lines) + "\n", mode=private_mode(executable=True))
    return path
