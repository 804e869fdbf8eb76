"""The program's code, copied into the experiment at submit so that the jobs run what was
submitted: editing train.py while the jobs wait in the queue changes nothing they run.

In a git work tree the copy holds the tracked files and the untracked ones git does not ignore
(what `git ls-files --cached --others --exclude-standard` lists); elsewhere every file but
hidden folders, virtual environments and caches. The commit, whether the tree was dirty, and the
diff against the commit are recorded beside the copy (code.json, code.diff).
"""

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from dlhpc.errors import UserError
from dlhpc.fsutil import is_there
from dlhpc.spec import program
from dlhpc.spec.yamlsource import where

CODE_DIR = "code"
SKIPPED_DIRS = {"__pycache__", "node_modules", ".git", ".hg", ".svn"}
MAX_FILES = 20_000
MAX_DIFF_BYTES = 1 << 20


@dataclass
class CodeSnapshot:
    source: Path
    files: list = field(default_factory=list)  # paths relative to source
    size: int = 0
    git: dict | None = None
    diff: str = ""
    script: str | None = None  # the script's path inside the copy
    python: str = ""
    python_version: str = ""

    def record(self) -> dict:
        return {
            "source": str(self.source),
            "files": len(self.files),
            "bytes": self.size,
            "git": self.git,
            "script": self.script,
            "python": self.python,
            "python_version": self.python_version,
        }


def collect(spec, exclude: Path | None = None) -> CodeSnapshot | None:
    """What would be copied for this spec's program (None for the built-in trainer); raises
    UserError naming the spec line for a missing script, a code folder too large, or an
    interpreter that does not run. `exclude`: a folder never copied (the runs folder)."""
    data = spec.data
    if program.is_builtin(data):
        return None
    folder = program.code_folder(data, spec.source)
    if not is_there(folder, "dir"):
        raise UserError(f"{where(spec.origins, ('program', 'code'))}: program.code: no folder {folder}")
    snap = CodeSnapshot(folder)
    script = program.script_path(data, spec.source)
    if script is not None:
        snap.script = _script_in(folder, script.resolve(), spec)
    snap.files, snap.size = _listing(folder, data["program"]["code_max_mb"], exclude, spec)
    snap.git, snap.diff = _git(folder)
    snap.python, snap.python_version = _interpreter(data["program"].get("python"), spec)
    return snap


def _script_in(folder: Path, script: Path, spec) -> str:
    at = where(spec.origins, ("program", "script"))
    if not is_there(script, "file"):
        raise UserError(f"{at}: program.script: no file {script} (paths are relative to the spec's folder)")
    try:
        return str(script.relative_to(folder))
    except ValueError:
        raise UserError(
            f"{at}: program.script {script} is outside program.code ({folder}): the jobs run a copy of the code "
            "folder, so the script must be in it"
        ) from None


def _listing(folder: Path, max_mb: int, exclude: Path | None, spec) -> tuple[list, int]:
    files = _git_files(folder)
    if files is None:
        files = _walk(folder)
    skip = None
    if exclude is not None:
        try:
            skip = exclude.resolve().relative_to(folder).parts
        except ValueError:
            skip = None
    kept, size, sizes = [], 0, []
    for rel in files:
        path = folder / rel
        if skip and Path(rel).parts[: len(skip)] == skip:
            continue
        if not path.is_file() or (path.is_symlink() and not path.resolve().is_file()):
            continue  # deleted in the work tree, or a link to nothing
        n = path.stat().st_size
        kept.append(rel)
        sizes.append((n, rel))
        size += n
    if size > max_mb * 1_000_000 or len(kept) > MAX_FILES:
        largest = ", ".join(f"{rel} ({n / 1e6:.1f} MB)" for n, rel in sorted(sizes, reverse=True)[:3])
        raise UserError(
            f"{where(spec.origins, ('program',))}: the code folder {folder} holds {size / 1e6:.1f} MB in "
            f"{len(kept):,} files (at most {max_mb} MB in {MAX_FILES:,} files are copied into the experiment); "
            f"largest: {largest}. Keep data and checkpoints out of it (or in .gitignore), point program.code at "
            "the folder with just your code, or raise program.code_max_mb"
        )
    return kept, size


def _git_files(folder: Path) -> list | None:
    try:
        proc = subprocess.run(
            ["git", "-C", str(folder), "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", "."],
            capture_output=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    return list(dict.fromkeys(p for p in proc.stdout.decode(errors="surrogateescape").split("\0") if p))


def _walk(folder: Path) -> list:
    out = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = [
            d
            for d in sorted(dirs)
            if d not in SKIPPED_DIRS and not d.startswith(".") and not (Path(root) / d / "pyvenv.cfg").exists()
        ]
        for name in sorted(names):
            if not name.endswith((".pyc", ".pyo")):
                out.append(str((Path(root) / name).relative_to(folder)))
        if len(out) > MAX_FILES:
            break
    return out


def _git(folder: Path) -> tuple[dict | None, str]:
    from dlhpc.environment import git_state

    state = git_state(folder)
    if state is None:
        return None, ""
    try:
        diff = subprocess.run(
            ["git", "-C", str(folder), "diff", "HEAD", "--", "."], capture_output=True, timeout=60
        ).stdout.decode(errors="replace")
    except (OSError, subprocess.TimeoutExpired):
        diff = ""
    return state, diff[:MAX_DIFF_BYTES]


def _interpreter(chosen: str | None, spec) -> tuple[str, str]:
    python = str(Path(chosen).expanduser()) if chosen else sys.executable
    try:
        proc = subprocess.run(
            [python, "-c", "import sys; print(sys.version.split()[0])"], capture_output=True, text=True, timeout=60
        )
        ok = proc.returncode == 0
    except (OSError, subprocess.TimeoutExpired) as exc:
        ok, proc = False, exc
    if not ok:
        raise UserError(
            f"{where(spec.origins, ('program', 'python'))}: program.python {python} does not run here; name the "
            "interpreter of your environment (e.g. /path/to/venv/bin/python)"
        )
    return python, proc.stdout.strip()


def write(snap: CodeSnapshot, exp_dir: Path, dir_mode: int, file_mode: int) -> None:
    """Copy the listed files into <exp>/code, read-only, and record where they came from.
    `file_mode`: the mode of an executable file in the experiment (others' bits are masked)."""
    from dlhpc.fsutil import write_new

    target = exp_dir / CODE_DIR
    target.mkdir(mode=dir_mode)
    for rel in snap.files:
        dest = target / rel
        for parent in reversed(dest.relative_to(target).parents[:-1]):
            (target / parent).mkdir(mode=dir_mode, exist_ok=True)
        shutil.copyfile(snap.source / rel, dest)
        executable = 0o555 if os.access(snap.source / rel, os.X_OK) else 0o444
        os.chmod(dest, file_mode & executable)
    plain = file_mode & ~0o111
    write_new(exp_dir / "code.json", (json.dumps(snap.record(), indent=1) + "\n").encode(), plain)
    if snap.diff:
        write_new(exp_dir / "code.diff", snap.diff.encode(), plain)


def doctor_checks(spec) -> list:
    """`dlhpc doctor` lines for a spec's own program: the script and code folder, and the
    interpreter that will run it (outside a container: a container's is checked with the image)."""
    from dlhpc.schedulers.base import Check

    if program.is_builtin(spec.data):
        return []
    try:
        snap = collect(spec)
    except UserError as exc:
        return [Check("program", False, str(exc).split(": ", 1)[-1], "fix the spec's program section")]
    checks = [Check("program code", True, f"{len(snap.files)} files, {snap.size / 1e6:.1f} MB from {snap.source}")]
    if spec.data["env"]["container"].get("image"):
        return checks
    proc = subprocess.run(
        [snap.python, "-c", "import torch; print(torch.__version__)"], capture_output=True, text=True, timeout=300
    )
    said = (proc.stdout.strip() or proc.stderr.strip() or "no answer").splitlines()[-1]
    fix = "set program.python to an environment with torch (its bin/python)"
    checks.append(
        Check(f"program's Python {snap.python_version}", proc.returncode == 0, f"{snap.python}: torch {said}", fix)
    )
    return checks
