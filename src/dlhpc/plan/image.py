"""The container image at submit: it must be there (a job that fails an hour later in the queue
because of a typo in a path helps nobody), and its digest goes into the environment record so
that two experiments run in two images can be told apart."""

import hashlib
import shutil
import subprocess
from pathlib import Path

import dlhpc.containers as containers
from dlhpc.errors import UserError
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
    if runtime == "charliecloud" and not path.is_dir():
        raise UserError(f"{at}: env.container.image: no image folder {path} (Charliecloud runs an unpacked image)")
    if runtime != "charliecloud" and not path.is_file():
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
