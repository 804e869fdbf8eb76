"""What an experiment ran with, recorded at submit: the commit of the repository that holds the
spec (and whether it had uncommitted changes), the versions that matter, and every installed
package (environment.txt beside experiment.json, in `pip freeze` form). Read without importing
torch: a login node must not pay for it. The versions training saw on the node (CUDA, NCCL,
cuDNN, the device) are in each trial's result.json.
"""

import platform
import subprocess
from importlib import metadata
from pathlib import Path

KEY_PACKAGES = ("torch", "torchvision", "submitit", "numpy", "pyyaml", "jinja2")


def git_state(path: Path) -> dict | None:
    """{"commit", "dirty", "repo"} of the git repository holding `path`, or None outside one."""
    folder = path if path.is_dir() else path.parent
    try:
        top = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "--show-toplevel", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if top.returncode != 0:
            return None
        repo, commit = top.stdout.split()[:2]
        dirty = (
            subprocess.run(
                ["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
            != ""
        )
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return None
    return {"repo": repo, "commit": commit, "dirty": dirty}


def torch_cuda_build() -> str | None:
    """The CUDA version torch was built for, read from torch/version.py (importing torch is slow)."""
    import importlib.util
    import re

    found = importlib.util.find_spec("torch")
    if not found or not found.submodule_search_locations:
        return None
    try:
        text = (Path(list(found.submodule_search_locations)[0]) / "version.py").read_text()
    except OSError:
        return None
    m = re.search(r"^cuda\s*(?::\s*\S+)?\s*=\s*['\"]([^'\"]+)['\"]", text, re.MULTILINE)
    return m.group(1) if m else None


def versions() -> dict:
    from dlhpc._version import __version__

    out = {"dlhpc": __version__, "python": platform.python_version()}
    for pkg in KEY_PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    out["torch_cuda"] = torch_cuda_build()
    return out


def freeze() -> str:
    """Every installed distribution as `name==version`, sorted: what `pip freeze` prints."""
    seen = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name and name.lower() not in seen:
            seen[name.lower()] = f"{name}=={dist.version}"
    return "".join(line + "\n" for _, line in sorted(seen.items()))


def record(spec_source: str) -> dict:
    source = Path(spec_source) if spec_source and not spec_source.startswith("<") else None
    return {
        "versions": versions(),
        "git": git_state(source.resolve()) if source and source.exists() else None,
        "host": platform.node(),
    }
