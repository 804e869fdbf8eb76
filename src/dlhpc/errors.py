"""Error types that the CLI turns into one message and an exit code (never a traceback)."""


class DlhpcError(Exception):
    """Base class: the work itself failed (exit 1)."""

    exit_code = 1


class UserError(DlhpcError):
    """Bad input: spec, flags or paths (exit 2). The message says what is wrong and how to fix it."""

    exit_code = 2


class CommandError(DlhpcError):
    """An external command (sbatch, sacct, qsub...) failed; carries everything needed to debug it."""

    def __init__(self, argv, returncode, stdout="", stderr="", note=""):
        self.argv, self.returncode, self.stdout, self.stderr = list(argv), returncode, stdout, stderr
        import shlex

        parts = [f"command failed (exit {returncode}): {shlex.join(self.argv)}"]
        if note:
            parts.append(note)
        if stdout.strip():
            parts.append("stdout:\n" + stdout.strip())
        if stderr.strip():
            parts.append("stderr:\n" + stderr.strip())
        super().__init__("\n".join(parts))
