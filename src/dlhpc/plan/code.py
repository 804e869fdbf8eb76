"""The program's code, copied into the experiment at submit so that the jobs run what was
submitted: editing train.py while the jobs wait in the queue changes nothing they run.

In a git work tree the copy holds the tracked files and the untracked ones git does not ignore
(what `git ls-files --cached --others --exclude-standard` lists); elsewhere every file but
hidden folders, virtual environments and caches. The commit, whether the tree was dirty, and the
diff against the commit are recorded beside the copy (code.json, code.diff).

The copy is of your code and nothing else (docs/security.md): links that leave the folder,
special files, hidden and credential files are skipped and listed in code.json with the reason;
the size bound counts the bytes actually read; no copy is more readable than its source.
"""

import json
import os
import re
import stat
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
SKIPPED_SHOWN = 200  # code.json names this many skipped files (and counts them all)
CHUNK = 1 << 20


@dataclass
class CodeSnapshot:
    source: Path
    files: list = field(default_factory=list)  # paths relative to source
    size: int = 0
    git: dict | None = None
    diff: str = ""
    script: str | None = None  # the script's path inside the copy
    python: str = ""
    max_bytes: int = 0  # the bound on what is read while copying (program.code_max_mb)
    skipped: list = field(default_factory=list)  # [{"path", "why"}]: listed, not copied

    def record(self) -> dict:
        return {
            "source": str(self.source),
            "files": len(self.files),
            "bytes": self.size,
            "skipped": self.skipped[:SKIPPED_SHOWN],
            "skipped_count": len(self.skipped),
            "git": self.git,
            "script": self.script,
            "python": self.python,
        }


def collect(spec, exclude: Path | None = None) -> CodeSnapshot | None:
    """What would be copied for this spec's program (None for the built-in trainer); raises
    UserError naming the spec line for a missing script, a code folder too large or unreadable,
    or an interpreter dlhpc would not start. `exclude`: a folder never copied (the runs folder).
    Nothing named here is executed: the interpreter is checked by stat (interpreter_problem)."""
    data = spec.data
    if program.is_builtin(data):
        return None
    folder = program.code_folder(data, spec.source)
    if not is_there(folder, "dir"):
        raise UserError(f"{where(spec.origins, ('program', 'code'))}: no folder {folder}")
    snap = CodeSnapshot(folder)
    script = program.script_path(data, spec.source)
    if script is not None:
        snap.script = _script_in(folder, script.resolve(), spec)
    snap.max_bytes = data["program"]["code_max_mb"] * 1_000_000
    snap.files, snap.size, snap.skipped = _listing(folder, data["program"]["code_max_mb"], exclude, spec)
    snap.git, snap.diff = _git(folder)
    snap.python = _interpreter(data["program"].get("python"), spec)
    return snap


def _script_in(folder: Path, script: Path, spec) -> str:
    at = where(spec.origins, ("program", "script"))
    if not is_there(script, "file"):
        raise UserError(f"{at}: no file {script} (paths are relative to the spec's folder)")
    try:
        return str(script.relative_to(folder))
    except ValueError:
        raise UserError(
            f"{at}: {script} is outside program.code ({folder}): the jobs run a copy of the code "
            "folder, so the script must be in it"
        ) from None


def _listing(folder: Path, max_mb: int, exclude: Path | None, spec) -> tuple[list, int, list]:
    """The files to copy (relative paths), their bytes, and what was skipped and why."""
    _refuse_folder(folder, spec)
    files = _git_files(folder)
    if files is None:
        files = _walk(folder)
    skip = None
    if exclude is not None:
        try:
            skip = exclude.resolve().relative_to(folder).parts
        except ValueError:
            skip = None
    kept, size, sizes, skipped = [], 0, [], []
    for rel in files:
        if skip and Path(rel).parts[: len(skip)] == skip:
            continue
        why = skip_reason(folder, rel)
        if why is not None:
            if why:  # ("": deleted in the work tree, not worth a line)
                skipped.append({"path": rel, "why": why})
            continue
        path = folder / rel
        if not os.access(path, os.R_OK):
            raise UserError(
                f"{where(spec.origins, ('program',))}: {path} in the code folder cannot be read by you, so it cannot "
                "be copied into the experiment; fix its mode (chmod u+r), or keep it out of program.code (.gitignore)"
            )
        n = path.stat().st_size  # (a link here is to a file inside the folder: that file counts)
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
    return kept, size, skipped


# Never copied, whatever git tracks: the snapshot is your code, and with `share: group` your
# group reads it. Hidden files and folders (.env, .netrc, .git-credentials, .ssh...) and these:
CREDENTIAL_NAMES = re.compile(r"(?:\.?netrc|\.?git-credentials|\.?pypirc|.*\.pem|.*\.key|id_[a-z0-9]+(?:\.pub)?)")
SYSTEM_TREES = ("/proc", "/sys", "/dev")


def _refuse_folder(folder: Path, spec) -> None:
    at = where(spec.origins, ("program", "code"))
    home = Path(os.path.expanduser("~")).resolve()
    if folder in (home, Path("/")):  # (every file of yours, .ssh and all, would be a candidate)
        raise UserError(
            f"{at}: {folder} is your home folder (or the whole file system): the jobs get a copy of the code folder, "
            "so point program.code at the folder of your project (e.g. ~/projects/mnist)"
        )
    if _under_system_tree(folder):
        raise UserError(f"{at}: {folder} is not a folder of files (it is under {folder.parts[1]})")


def _under_system_tree(path: Path) -> bool:
    return any(str(path) == top or str(path).startswith(top + "/") for top in SYSTEM_TREES)


def skip_reason(folder: Path, rel: str) -> str | None:
    """Why a listed file is not copied (None: it is; "": it is gone). Links are never followed out
    of the code folder: a link a group member planted in a shared project (to your ~/.ssh/id_rsa,
    to /proc/self/environ) would otherwise be copied as the file it points to."""
    parts = Path(rel).parts
    if any(part.startswith(".") for part in parts):
        return "hidden"
    if CREDENTIAL_NAMES.fullmatch(parts[-1]):
        return "a credential file"
    path = folder / rel
    try:
        st = path.lstat()
    except OSError:
        return ""
    if stat.S_ISLNK(st.st_mode):
        target = Path(os.path.realpath(path))
        if _under_system_tree(target):
            return f"a link to {target.parts[1]}"
        try:
            inside = target.relative_to(folder)
        except ValueError:
            return "a link that leaves the code folder"
        if not target.is_file():
            return "a link to nothing"
        return skip_reason(folder, str(inside))  # (its target is copied as itself would be)
    real = Path(os.path.realpath(path))
    if real != path and not real.is_relative_to(folder):
        return "behind a folder link that leaves the code folder"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    return None


def _git_files(folder: Path) -> list | None:
    try:
        proc = subprocess.run(
            # (no fsmonitor: a repository's config may name a command, and listing files runs none)
            [
                "git",
                "-c",
                "core.fsmonitor=false",
                "-C",
                str(folder),
                "ls-files",
                "-z",
                "--cached",
                "--others",
                "--exclude-standard",
                "--",
                ".",
            ],  # fmt: skip
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


def _interpreter(chosen: str | None, spec) -> str:
    """The interpreter the jobs run, checked by stat alone: validate, render and a dry run never
    execute what a spec names (a colleague's spec could name a script of hers). Its version is
    asked by the job itself (the trial's software record)."""
    python = str(Path(chosen).expanduser()) if chosen else sys.executable
    problem = interpreter_problem(Path(python))
    if problem:
        raise UserError(
            f"{where(spec.origins, ('program', 'python'))}: {python} {problem}; name the "
            "interpreter of your environment (e.g. /path/to/venv/bin/python)"
        )
    return python


def interpreter_problem(python: Path) -> str | None:
    """Why dlhpc would not start this interpreter for you (None: it may): it must exist, be an
    executable file, and neither it nor its real file be owned or writable by anyone but you or root."""
    for path in dict.fromkeys([python, Path(os.path.realpath(python))]):
        try:
            st = path.stat()
        except OSError:
            return "does not exist here"
        if not stat.S_ISREG(st.st_mode) or not st.st_mode & 0o111:
            return "is not an executable file"
        if st.st_uid not in (0, os.getuid()):
            return f"belongs to {_user(st.st_uid)}: dlhpc runs only an interpreter owned by you or root"
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return "is writable by others (chmod go-w it): anyone who can change it could run code as you"
    return None


def _user(uid: int) -> str:
    from dlhpc.ownership import user_name

    return user_name(uid)


def write(snap: CodeSnapshot, exp_dir: Path, dir_mode: int, file_mode: int) -> None:
    """Copy the listed files into <exp>/code, read-only, and record where they came from.
    `file_mode`: the mode of an executable file in the experiment (others' bits are masked)."""
    from dlhpc.fsutil import write_new

    target = exp_dir / CODE_DIR
    target.mkdir(mode=dir_mode)
    left = snap.max_bytes or None
    for rel in snap.files:
        dest = target / rel
        for parent in reversed(dest.relative_to(target).parents[:-1]):
            (target / parent).mkdir(mode=dir_mode, exist_ok=True)
        copied = _copy_file(snap.source, rel, dest, file_mode, left)
        if left is not None:
            left -= copied
    plain = file_mode & ~0o111
    write_new(exp_dir / "code.json", (json.dumps(snap.record(), indent=1) + "\n").encode(), plain)
    if snap.diff:
        write_new(exp_dir / "code.diff", snap.diff.encode(), plain)


def _copy_file(folder: Path, rel: str, dest: Path, file_mode: int, left: int | None) -> int:
    """Copy one listed file, read through a descriptor that is checked to be a regular file (the
    name could have become a link or a FIFO since the listing), at most `left` bytes (a file that
    grew, or one that states 0 bytes and never ends, cannot fill the disk); the copy's mode is never
    wider than its source's (a 0600 file stays the owner's, whatever `share` says). The bytes read."""
    src = folder / rel
    why = skip_reason(folder, rel)
    if why is not None:
        raise UserError(f"{src} changed while it was copied ({why or 'gone'}); submit again")
    target = Path(os.path.realpath(src))
    try:
        fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise UserError(f"{src}: cannot read it to copy it into the experiment ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as source:
        st = os.fstat(source.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise UserError(f"{src} changed while it was copied (not a regular file now); submit again")
        copied = 0
        with open(dest, "xb") as out:
            while chunk := source.read(CHUNK if left is None else min(CHUNK, left - copied + 1)):
                copied += len(chunk)
                if left is not None and copied > left:
                    raise UserError(
                        f"{src}: the code folder grew past program.code_max_mb while it was copied; keep data out "
                        "of program.code, or raise program.code_max_mb"
                    )
                out.write(chunk)
    executable = 0o555 if st.st_mode & stat.S_IXUSR else 0o444
    source_bits = stat.S_IMODE(st.st_mode) | 0o400  # (it was readable by you: the copy is too)
    os.chmod(dest, file_mode & executable & source_bits)
    return copied


ASK_VERSIONS = "import platform, torch; print('Python', platform.python_version() + ', torch', torch.__version__)"


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
    # doctor is the one command that starts the interpreter on the login node, asked to, and
    # only one collect() passed by stat (yours or root's, writable by nobody else)
    proc = subprocess.run(
        [
            snap.python,
            "-c",
            "import platform, torch; print('Python', platform.python_version() + ', torch', torch.__version__)",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    said = (proc.stdout.strip() or proc.stderr.strip() or "no answer").splitlines()[-1]
    fix = "set program.python to an environment with torch (its bin/python)"
    checks.append(Check("program's Python", proc.returncode == 0, f"{snap.python}: {said}", fix))
    return checks
