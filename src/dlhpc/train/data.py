"""MNIST as tensors resident on the training device: no per-sample transforms, no DataLoader.

The four raw IDX files are read once through torchvision's readers (downloaded and md5-checked
when missing and allowed), normalised once, and moved to the device. Batches are
then index_select gathers on the device, which costs microseconds.
"""

import os
from pathlib import Path

from dlhpc.errors import UserError

MEAN, STD = 0.1307, 0.3081
RAW_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def default_root() -> Path:
    return Path(os.environ.get("DLHPC_DATA") or os.path.join(os.path.expanduser("~"), ".cache", "dlhpc", "data"))


def resolve_root(root) -> Path:
    return Path(os.path.expanduser(root)) if root else default_root()


def raw_dir(root: Path) -> Path:
    return root / "MNIST" / "raw"


def is_present(root: Path) -> bool:
    return all((raw_dir(root) / name).is_file() for name in RAW_FILES)


def missing_message(root: Path) -> str:
    return (
        f"MNIST not found: looked for {', '.join(RAW_FILES)} in {raw_dir(root)}. "
        f"Fix: run `dlhpc data fetch --root {root}` on a machine with internet (the login node), "
        "or point data.root (or $DLHPC_DATA) at a folder that holds MNIST/raw/."
    )


# md5 of the uncompressed files: checks the content, whatever gzip packaging a mirror serves.
RAW_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")


def mirrors() -> list[str]:
    """$DLHPC_MNIST_MIRROR (a base URL: a site mirror, or a local test server) first."""
    own = os.environ.get("DLHPC_MNIST_MIRROR")
    return ([own.rstrip("/") + "/"] if own else []) + list(MIRRORS)


def fetch(root: Path) -> Path:
    """Download the four files (.gz) into root/MNIST/raw, verify each one's md5, write atomically."""
    import gzip
    import hashlib
    import urllib.request

    from dlhpc.fsutil import atomic_write_bytes

    target = raw_dir(root)
    target.mkdir(parents=True, exist_ok=True)
    for name, md5 in RAW_MD5.items():
        if (target / name).is_file() and _md5(target / name) == md5:
            continue
        errors = []
        for base in mirrors():
            url = base + name + ".gz"
            try:
                with urllib.request.urlopen(url, timeout=60) as response:
                    data = gzip.decompress(response.read())
            except (OSError, EOFError, ValueError) as exc:  # URLError, HTTPError, bad gzip
                errors.append(f"{url}: {exc}")
                continue
            got = hashlib.md5(data).hexdigest()
            if got != md5:
                errors.append(f"{url}: checksum mismatch (got {got}, want {md5})")
                continue
            atomic_write_bytes(target / name, data)
            break
        else:
            raise UserError(
                f"could not download MNIST file {name}: " + "; ".join(errors) + ". " + missing_message(root)
            )
    return root


def _md5(path: Path) -> str:
    import hashlib

    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def ensure(root, download: bool) -> Path:
    root = resolve_root(root)
    if is_present(root):
        return root
    if download:
        return fetch(root)
    raise UserError(missing_message(root))


def read_idx(path: Path, count: int | None = None):
    """An IDX file (MNIST's format: a magic number whose third byte is the type, 0x08 for unsigned
    bytes, and whose fourth is the number of dimensions; big-endian sizes; then the data) as a
    uint8 tensor; with `count`, its first `count` items only, read alone (a trial on a subset does
    not read and copy the rest: with 6,000 of 60,000 images that was half a short trial's cost).
    Read here rather than through torchvision, so a container image needs only torch."""
    import math
    import struct

    import torch

    with open(path, "rb") as f:
        zero, kind, ndim = struct.unpack(">HBB", f.read(4))
        if zero != 0 or kind != 0x08:
            raise ValueError(f"{path}: not an IDX file of unsigned bytes")
        shape = list(struct.unpack(f">{ndim}I", f.read(4 * ndim)))
        if count is not None:
            shape[0] = min(shape[0], count)
        body = bytearray(math.prod(shape))
        if f.readinto(body) != len(body):
            raise ValueError(f"{path}: shorter than its header says")
    return torch.frombuffer(body, dtype=torch.uint8).reshape(shape)


def load(root, device, train_subset=None, download=True, dtype=None):
    """(x_train, y_train, x_test, y_test) on `device`; x is float [N,1,28,28], normalised."""
    root = ensure(root, download)
    raw = raw_dir(root)
    tensors = []
    for (images, labels), count in zip((RAW_FILES[:2], RAW_FILES[2:]), (train_subset or None, None), strict=True):
        tensors += [read_idx(raw / images, count), read_idx(raw / labels, count).long()]
    x_train, y_train, x_test, y_test = tensors

    def prep(x):
        x = x.to(device, non_blocking=True).unsqueeze(1).float().div_(255).sub_(MEAN).div_(STD)
        return x.to(dtype) if dtype is not None else x

    return prep(x_train), y_train.to(device), prep(x_test), y_test.to(device)
