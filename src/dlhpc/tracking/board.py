"""`dlhpc tensorboard [EXP]`: TensorBoard over one experiment (or every one in the runs folder)
on the login node, on the loopback and a free port; the URL, and the `ssh -L` line that reaches it
from a laptop. Ctrl-C stops it (and the TensorBoard process it started, nothing else).

Trials that ran without tracking.tensorboard and have finished get their event files written
once here from metrics.jsonl (nothing else writes them any more); running ones are the runner's.
"""

import getpass
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from dlhpc.errors import UserError
from dlhpc.fsutil import read_json
from dlhpc.node.rendezvous import free_port
from dlhpc.tracking import INSTALL, has

READY_TIMEOUT_S = 120
FINISHED = ("COMPLETED", "FAILED")


def require_tensorboard() -> None:
    if not has("tensorboard"):
        raise UserError(f"TensorBoard is not installed in this Python ({sys.executable}): {INSTALL}")


def trials_under(folder: Path) -> list[Path]:
    """Trial folders of one experiment, or of every experiment in a runs folder."""
    from dlhpc.plan.experiment import experiments_under

    if (folder / "experiment.json").is_file():
        return sorted(d for d in folder.iterdir() if (d / "trial.json").is_file())
    return [t for exp in sorted(experiments_under(folder)) for t in trials_under(exp)]


def own_experiments(folder: Path, say=print) -> list[Path]:
    """The experiments TensorBoard is shown: one of yours, or yours in a runs folder; others'
    are skipped with one line (their trials are theirs to show: dlhpc neither reads their files
    into a page on a port any local user reaches, nor writes event files into them)."""
    from dlhpc.ownership import is_own
    from dlhpc.plan.experiment import experiments_under

    found = [folder] if (folder / "experiment.json").is_file() else sorted(experiments_under(folder))
    own = [exp for exp in found if is_own(exp)]
    if len(own) < len(found):
        say(f"skipped {len(found) - len(own)} experiment(s) of other users under {folder} (dlhpc shows only yours)")
    if not own:
        raise UserError(f"no experiments of yours under {folder}: dlhpc tensorboard shows only your own")
    return own


def logdir_args(folder: Path, experiments: list[Path]) -> list[str]:
    """TensorBoard's --logdir: the folder when all of it is yours, else your experiments by name."""
    from dlhpc.plan.experiment import experiments_under

    if experiments == [folder] or len(experiments) == len(experiments_under(folder)):
        return ["--logdir", str(folder)]
    unsafe = [e for e in experiments if not SAFE_SPEC.fullmatch(str(e))]
    if unsafe:
        raise UserError(
            f"{folder} also holds other users' experiments, and {unsafe[0]} cannot be named to TensorBoard one by one "
            "(a comma or colon in its path): name one experiment (dlhpc tensorboard EXP)"
        )
    return ["--logdir_spec", ",".join(f"{e.name}:{e}" for e in experiments)]


SAFE_SPEC = re.compile(r"[^,:]+")


def fill_in_events(trials: list[Path]) -> int:
    """Event files for finished trials that have metrics and none yet; how many were written."""
    from dlhpc.tracking.events import PATTERN, EventMirror

    written = 0
    for trial in trials:
        state = (read_json(trial / "result.json", {}) or {}).get("state")
        if state in FINISHED and (trial / "metrics.jsonl").is_file() and not any(trial.glob(PATTERN)):
            mirror = EventMirror(trial)
            mirror.stop()  # one sync, then closed
            written += 1
    return written


def wait_ready(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-5:]
            raise UserError("TensorBoard did not start:\n  " + "\n  ".join(tail))
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    proc.terminate()
    raise UserError(f"TensorBoard did not answer on {url} within {READY_TIMEOUT_S} s")


def serve(folder: Path, port: int | None = None, say=print) -> int:
    """Serve `folder` until Ctrl-C or SIGTERM; 0 when stopped that way."""
    require_tensorboard()
    experiments = own_experiments(folder, say)
    trials = [t for exp in experiments for t in trials_under(exp)]
    filled = fill_in_events(trials)
    port = port or free_port("127.0.0.1")
    url = f"http://127.0.0.1:{port}/"
    log = Path(tempfile.mkstemp(prefix="dlhpc-tensorboard-", suffix=".log")[1])
    command = [sys.executable, "-m", "tensorboard.main", *logdir_args(folder, experiments), "--host", "127.0.0.1"]
    command += ["--port", str(port), "--reload_interval", "5"]
    for signum in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C and `kill` stop it (started in the background too)
        signal.signal(signum, _interrupt)
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_ready(url, proc, log)
        more = f"; events written now for {filled}" if filled else ""
        say(f"TensorBoard over {folder} ({len(trials)} trials{more})")
        say(f"  {url}")
        say(f"  from your laptop: ssh -N -L {port}:127.0.0.1:{port} {getpass.getuser()}@{socket.getfqdn()}  then {url}")
        say("  (anyone logged in to this node can reach that port too; Ctrl-C stops it)")
        proc.wait()
        raise UserError(f"TensorBoard ended by itself (exit {proc.returncode}); its output: {log}")
    except KeyboardInterrupt:
        log.unlink(missing_ok=True)
        return 0
    finally:
        _stop(proc)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _stop(proc: subprocess.Popen) -> None:
    """End the TensorBoard this command started (its own child: no other process is signalled)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
