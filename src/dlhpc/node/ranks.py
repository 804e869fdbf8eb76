"""This node's ranks of one trial, as child processes: start them, pass signals on, wait for them
the way `srun --kill-on-bad-exit` does (one rank failing stops the others at once, instead of
leaving them in a collective until the walltime), and keep each rank's last lines of stderr."""

import collections
import os
import signal
import subprocess
import threading
import time

TAIL_LINES = 20
KILL_AFTER_S = 10.0  # a rank told to stop by SIGTERM after another failed gets this long


class Ranks:
    def __init__(self, commands: list[list[str]], envs: list[dict], cwd):
        self.commands, self.envs, self.cwd = commands, envs, str(cwd)
        self.procs: list[subprocess.Popen] = []
        self.tails: list[collections.deque] = []
        self.copiers: list[threading.Thread] = []
        self.stop_requested: float | None = None  # when the stop signal was passed on

    def start(self) -> None:
        for argv, env in zip(self.commands, self.envs, strict=True):
            proc = subprocess.Popen(argv, cwd=self.cwd, env=env, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
            tail = collections.deque(maxlen=TAIL_LINES)
            copier = threading.Thread(target=_copy_stderr, args=(proc.stderr, tail), daemon=True)
            copier.start()
            self.copiers.append(copier)
            self.procs.append(proc)
            self.tails.append(tail)

    def signal_all(self, signum: int) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    proc.send_signal(signum)
                except ProcessLookupError:
                    pass

    def stop(self, signum: int) -> None:
        """Pass the time-limit (or preemption) signal on: each rank saves and exits."""
        if self.stop_requested is None:  # once: a second signal could cut a save short
            self.stop_requested = time.monotonic()
            self.signal_all(signum)

    def wait_stopped(self, grace_s: float) -> None:
        """After stop(): wait until every rank exited, or grace_s passed; kill what is left."""
        deadline = (self.stop_requested or time.monotonic()) + grace_s
        while any(p.poll() is None for p in self.procs) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.signal_all(signal.SIGKILL)
        for proc in self.procs:
            proc.wait()

    def wait(self, poll_s: float = 0.1) -> tuple[int, int | None]:
        """(exit code, index of the first rank that failed, or None). When a rank fails, the
        others get SIGTERM, then SIGKILL after KILL_AFTER_S."""
        failed_at = None
        while True:
            codes = [p.poll() for p in self.procs]
            if failed_at is None:
                failed_at = next((i for i, c in enumerate(codes) if c not in (None, 0)), None)
                if failed_at is not None and self.stop_requested is None:
                    self.signal_all(signal.SIGTERM)
                    kill_at = time.monotonic() + KILL_AFTER_S
            if all(c is not None for c in codes):
                return (codes[failed_at] if failed_at is not None else 0), failed_at
            if failed_at is not None and self.stop_requested is None and time.monotonic() > kill_at:
                self.signal_all(signal.SIGKILL)
            time.sleep(poll_s)

    def tail(self, index: int) -> list[str]:
        self.copiers[index].join(timeout=5)  # the rank has ended: its copier reaches the pipe's end
        return list(self.tails[index])


def _copy_stderr(pipe, tail: collections.deque) -> None:
    """Copy a rank's stderr to ours (the trial's job.err) line by line, keeping the last lines."""
    for line in iter(pipe.readline, b""):
        try:
            os.write(2, line)
        except OSError:
            pass
        tail.append(line.decode(errors="replace").rstrip("\n"))
    pipe.close()


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"
