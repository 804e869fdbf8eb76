"""MNIST as tensors resident on the training device: no per-sample transforms, no DataLoader.

The four raw IDX files are read once through torchvision's readers (downloaded, with checksum
verification, when missing and allowed), normalised once, and moved to the device. Batches are
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
    return (f"MNIST not found: looked for {', '.join(RAW_FILES)} in {raw_dir(root)}. "
            f"Fix: run `dlhpc data fetch --root {root}` on a machine with internet (the login node), "
            "or point data.root (or $DLHPC_DATA) at a folder that holds MNIST/raw/.")


def fetch(root: Path) -> Path:
    """Download MNIST into root with torchvision (md5-checked). Mirrors can be overridden with
    $DLHPC_MNIST_MIRROR (a base URL), e.g. a site mirror or a local test server."""
    from torchvision.datasets import MNIST

    mirror = os.environ.get("DLHPC_MNIST_MIRROR")
    if mirror:
        MNIST.mirrors = [mirror.rstrip("/") + "/"]
    root.mkdir(parents=True, exist_ok=True)
    try:
        MNIST(str(root), train=True, download=True)
        MNIST(str(root), train=False, download=True)
    except Exception as exc:  # torchvision raises RuntimeError / URLError / OSError
        raise UserError(f"could not download MNIST into {root}: {exc}. " + missing_message(root)) from None
    return root


def ensure(root, download: bool) -> Path:
    root = resolve_root(root)
    if is_present(root):
        return root
    if download:
        return fetch(root)
    raise UserError(missing_message(root))


def load(root, device, train_subset=None, download=True, dtype=None):
    """(x_train, y_train, x_test, y_test) on `device`; x is float [N,1,28,28], normalised."""
    import torch
    from torchvision.datasets.mnist import read_image_file, read_label_file

    root = ensure(root, download)
    raw = raw_dir(root)
    tensors = []
    for images, labels in (RAW_FILES[:2], RAW_FILES[2:]):
        x = read_image_file(str(raw / images))
        y = read_label_file(str(raw / labels)).long()
        tensors += [x, y]
    x_train, y_train, x_test, y_test = tensors
    if train_subset:
        x_train, y_train = x_train[:train_subset], y_train[:train_subset]

    def prep(x):
        x = x.to(device, non_blocking=True).unsqueeze(1).float().div_(255).sub_(MEAN).div_(STD)
        return x.to(dtype) if dtype is not None else x

    return prep(x_train), y_train.to(device), prep(x_test), y_test.to(device)
