"""The one way dlhpc shells out: on failure the user sees the command, exit code and output."""

import os
import subprocess

from dlhpc.errors import CommandError


def run_command(argv, *, timeout=60, cwd=None, input=None, check=True, env=None) -> subprocess.CompletedProcess:
    # A site (or a test) can cap every scheduler call: a hung sacct must not hang the login node.
    cap = os.environ.get("DLHPC_SCHEDULER_TIMEOUT")
    if cap:
        timeout = min(timeout, float(cap))
    try:
        proc = subprocess.run(
            [str(a) for a in argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
            input=input,
            env=env,
        )
    except FileNotFoundError:
        raise CommandError(argv, 127, "", "", note=f"{argv[0]!r} not found on PATH") from None
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        raise CommandError(argv, -1, out, err, note=f"timed out after {timeout} s") from None
    if check and proc.returncode != 0:
        raise CommandError(argv, proc.returncode, proc.stdout, proc.stderr)
    return proc
