"""The container image at submit: it must be there (a job that fails an hour later in the queue
because of a typo in a path helps nobody), and its digest goes into the environment record so
that two experiments run in two images can be told apart."""

import hashlib
import shutil
import subprocess
from pathlib import Path

import dlhpc.containers as containers
from dlhpc.errors import UserError
from dlhpc.fsutil import is_there
from dlhpc.spec.yamlsource import where

CHUNK = 1 << 22


def check(spec) -> dict | None:
    """{image, runtime, digest} for the spec's container (None: no container); UserError naming
    the spec line when the image is not there."""
    container = spec.data["env"]["container"]
    image = container.get("image")
    if not image:
        return None
    runtime = containers.runtime_of(container).name
    at = where(spec.origins, ("env", "container", "image"))
    if containers.is_reference(image):
        return {"image": image, "runtime": runtime, "digest": _reference_digest(image, runtime, at)}
    path = Path(image).expanduser().absolute()
    if runtime == "charliecloud" and not is_there(path, "dir"):
        raise UserError(f"{at}: env.container.image: no image folder {path} (Charliecloud runs an unpacked image)")
    if runtime != "charliecloud" and not is_there(path, "file"):
        raise UserError(f"{at}: env.container.image: no image file {path}; check the path (the nodes read it there)")
    return {"image": str(path), "runtime": runtime, "digest": digest(path)}


def digest(path: Path) -> str:
    """sha256 of an image file; of a rootfs folder, sha256 of its sorted file list with sizes."""
    h = hashlib.sha256()
    if path.is_file():
        with open(path, "rb") as f:
            while block := f.read(CHUNK):
                h.update(block)
        return "sha256:" + h.hexdigest()
    for file in sorted(p for p in path.rglob("*") if p.is_file() and not p.is_symlink()):
        h.update(f"{file.relative_to(path)}\0{file.stat().st_size}\n".encode(errors="surrogateescape"))
    return "files-sha256:" + h.hexdigest()


def _reference_digest(image: str, runtime: str, at: str) -> str | None:
    """podman's image id where podman is here; None where the image lives elsewhere (a registry
    reference pulled on the nodes)."""
    if runtime != "podman" or not shutil.which("podman"):
        return None
    proc = subprocess.run(
        ["podman", "image", "inspect", "--format", "{{.Id}}", image], capture_output=True, text=True, timeout=60
    )
    if proc.returncode != 0:
        raise UserError(
            f"{at}: env.container.image: podman has no image {image!r} here (`podman images` lists them; "
            "`podman pull` or `podman load` it first)"
        )
    return "sha256:" + proc.stdout.strip()


def doctor_checks(spec) -> list:
    """`dlhpc doctor` lines for env.container: the runtime, the image, torch in the image, GPUs."""
    from dlhpc.schedulers.base import Check

    container = spec.data["env"]["container"]
    if not container.get("image"):
        return []
    runtime = containers.runtime_of(container)
    command = runtime.executable
    found = shutil.which(command)
    checks = [Check(f"container runtime {runtime.name}", bool(found), _version(command) if found else "not on PATH",
                    f"load the module that provides {command}, or ask the site which runtime it supports")]  # fmt: skip
    try:
        record = check(spec)
        checks.append(Check("container image", True, f"{record['image']} ({record['digest'] or 'no digest'})"))
    except UserError as exc:
        return checks + [Check("container image", False, str(exc).split(": ", 2)[-1], "fix env.container.image")]
    if found and runtime.name != "pyxis":
        checks.append(_torch_in_image(spec, container, runtime))
    if containers.wants_gpus(spec.data):
        checks.append(_gpu_check(runtime))
    return checks


def _version(command: str) -> str:
    try:
        proc = subprocess.run([command, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "version unknown"
    return (proc.stdout or proc.stderr).strip().splitlines()[0] if (proc.stdout or proc.stderr).strip() else "?"


def _torch_in_image(spec, container: dict, runtime):
    """Start the image once, as a rank would, and ask its Python for torch."""
    import os
    import tempfile

    from dlhpc.schedulers.base import Check

    python = container.get("python") or "python3"
    with tempfile.TemporaryDirectory(prefix="dlhpc-doctor-") as folder:
        prefix = containers.prefix(spec.data, Path(folder))
        argv = containers.expand(prefix, runtime, folder, f"dlhpc-doctor-{os.getpid()}", [])
        argv += [python, "-c", "import torch; print(torch.__version__)"]
        try:
            proc = subprocess.run(
                argv, capture_output=True, text=True, timeout=300, env={**os.environ, "USER": _user()}
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return Check("torch in the image", False, str(exc), "try the image by hand: " + " ".join(argv))
    said = (proc.stdout.strip() or proc.stderr.strip() or "no answer").splitlines()[-1]
    fix = f"the image's {python} must import torch; choose another image or env.container.python"
    return Check("torch in the image", proc.returncode == 0, said, fix)


def _gpu_check(runtime):
    from dlhpc.schedulers.base import Check

    if runtime.name == "podman":
        cdi = any(
            Path(d, "nvidia.yaml").is_file() or Path(d, "nvidia.json").is_file() for d in ("/etc/cdi", "/var/run/cdi")
        )
        said = "CDI spec for nvidia.com/gpu" + ("" if cdi else " not found")
        return Check(
            "GPUs in the container", cdi or None, said, "nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml"
        )
    if runtime.name == "charliecloud":
        return Check(
            "GPUs in the container", None, "ch-run has no GPU flag", "prepare the image: ch-fromhost --nvidia IMAGE"
        )
    found = shutil.which("nvidia-smi")
    said = "nvidia-smi " + ("found" if found else "not on this node")
    return Check("GPUs in the container", bool(found) or None, said, "run dlhpc doctor --job on a GPU node")


def _user() -> str:
    import getpass

    return getpass.getuser()
