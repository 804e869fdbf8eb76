"""The training payload on the real MNIST: models, sharding, exact resume, DDP parity."""

import json

import pytest
import torch

from conftest import DATA, SMALL, make_trial, read
from dlhpc.train import data as mnist
from dlhpc.train.loop import shard_permutation, train_trial
from dlhpc.train.models import build


@pytest.mark.parametrize("name,params", [("softmax", 7850), ("mlp", None), ("lenet5", 61706), ("cnn", None)])
def test_models_map_images_to_ten_logits(name, params):
    model = build({"name": name, "hidden": [64, 32] if name == "mlp" else None, "width": None})
    model.eval()
    assert model(torch.zeros(5, 1, 28, 28)).shape == (5, 10)
    if params:
        assert sum(p.numel() for p in model.parameters()) == params


def test_cnn_variants_for_speed():
    # stride stem: 16 4x4 kernels instead of 16 5x5; hidden 128 and no dropout
    fast = build({"name": "cnn", "width": 16, "stem": "stride", "hidden": [128], "dropout": 0})
    plain = build({"name": "cnn", "width": 16, "hidden": None})
    fast.eval()
    assert fast(torch.zeros(5, 1, 28, 28)).shape == (5, 10)
    assert not any(isinstance(m, torch.nn.Dropout) for m in fast.modules())
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in list(fast.children())[:2])
    fewer = sum(p.numel() for p in plain.parameters()) - sum(p.numel() for p in fast.parameters())
    assert fewer == 16 * (25 - 16) + 800 * 128 + 2 * 128 + 128 * 10


def test_deeper_cnn_for_accuracy():
    # convs_per_block 2: one 3x3 same-size convolution more in each block (w->w, 2w->2w), each with batch norm
    deeper = build({"name": "cnn", "width": 8, "hidden": None, "convs_per_block": 2})
    plain = build({"name": "cnn", "width": 8, "hidden": None})
    deeper.eval()
    assert deeper(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    convs = [m for m in deeper.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (1, 8, (5, 5)),
        (8, 8, (3, 3)),
        (8, 16, (3, 3)),
        (16, 16, (3, 3)),
    ]
    more = sum(p.numel() for p in deeper.parameters()) - sum(p.numel() for p in plain.parameters())
    assert more == (8 * 8 * 9 + 2 * 8) + (16 * 16 * 9 + 2 * 16)


def test_data_is_the_real_mnist():
    x_train, y_train, x_test, y_test = mnist.load(DATA, "cpu")
    assert x_train.shape == (60000, 1, 28, 28) and x_test.shape == (10000, 1, 28, 28)
    assert torch.bincount(y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert abs(x_train.mean().item()) < 0.01 and abs(x_train.std().item() - 1) < 0.01  # normalised once


def test_a_subset_reads_only_its_images(tmp_path):
    # a copy of MNIST whose training files end after 6,000 items: a subset of 6,000 reads only
    # those (the same bytes as the whole file's first 6,000), a whole load says the file is cut short
    whole = mnist.load(DATA, "cpu")
    source, cut = mnist.raw_dir(mnist.resolve_root(DATA)), tmp_path / "MNIST" / "raw"
    cut.mkdir(parents=True)
    ends = {mnist.RAW_FILES[0]: 16 + 6000 * 28 * 28, mnist.RAW_FILES[1]: 8 + 6000}
    for name in mnist.RAW_FILES:
        (cut / name).write_bytes((source / name).read_bytes()[: ends.get(name)])
    part = mnist.load(tmp_path, "cpu", train_subset=6000, download=False)
    assert part[0].shape == (6000, 1, 28, 28) and torch.equal(part[0], whole[0][:6000])
    assert torch.equal(part[1], whole[1][:6000]) and torch.equal(part[2], whole[2])
    with pytest.raises(ValueError, match="shorter than its header says"):
        mnist.load(tmp_path, "cpu", download=False)


def test_shards_cover_every_image_once_per_epoch():
    shards = [shard_permutation(1001, seed=3, epoch=2, rank=r, world=4) for r in range(4)]
    assert len({len(s) for s in shards}) == 1  # equal work per rank (padded like DistributedSampler)
    assert set(torch.cat(shards).tolist()) == set(range(1001))
    assert not torch.equal(shard_permutation(1001, 3, 2, 0, 4), shard_permutation(1001, 3, 3, 0, 4))
    assert torch.equal(shard_permutation(1001, 3, 2, 0, 4), shard_permutation(1001, 3, 2, 0, 4))


def test_missing_data_message(tmp_path):
    with pytest.raises(Exception) as info:
        mnist.ensure(tmp_path / "empty", download=False)
    text = str(info.value)
    assert str(tmp_path / "empty") in text and "dlhpc data fetch" in text and "DLHPC_DATA" in text


def test_files_written_by_a_run(tmp_path):
    trial = make_trial(tmp_path, SMALL, ["train.epochs=2"])
    result = train_trial(trial)
    lines = read(trial / "metrics.jsonl")
    assert [m["epoch"] for m in lines] == [1, 2]
    for key in (
        "epoch",
        "train_loss",
        "train_acc",
        "test_loss",
        "test_acc",
        "epoch_time_s",
        "images_per_s",
        "lr",
        "world_size",
    ):
        assert key in lines[0]
    on_disk = json.loads((trial / "result.json").read_text())
    assert on_disk["state"] == "COMPLETED" and on_disk == {**on_disk, **result}
    for key in ("test_acc", "best_test_acc", "time_to_target_s", "train_time_s", "job_id", "nodes", "device"):
        assert key in on_disk
    assert 0.9 < on_disk["test_acc"] <= 1 and on_disk["time_to_target_s"] is not None
    assert (trial / "checkpoint.pt").is_file()


def test_diverging_run_fails_with_a_clear_reason(tmp_path):
    trial = make_trial(
        tmp_path,
        SMALL,
        ["train.epochs=1", "train.lr=1000", "train.schedule=constant", "train.momentum=0.99", "model.name=mlp"],
    )
    with pytest.raises(FloatingPointError):
        train_trial(trial)
    result = json.loads((trial / "result.json").read_text())
    assert result["state"] == "FAILED" and "lower train.lr" in result["error"]


def test_augmentation_is_applied_and_seeded(tmp_path):
    from dlhpc.train.augment import Augment

    x = torch.zeros(4, 1, 28, 28)
    x[:, :, 10:18, 12:16] = 1.0  # a bar, so a shift or a turn shows
    a = Augment(2, 10, 0.1, seed=7)
    assert torch.equal(a(x, 3, 5), Augment(2, 10, 0.1, seed=7)(x, 3, 5))  # the same step: the same batch
    assert not torch.equal(a(x, 3, 5), a(x, 3, 6)) and not torch.equal(a(x, 3, 5), x)
    assert torch.allclose(Augment(0, 0, 0, seed=7)(x, 3, 5), x, atol=1e-6)  # nothing asked: nothing changes
    plain = train_trial(make_trial(tmp_path / "p", SMALL, ["train.epochs=1"]))
    augmented = train_trial(make_trial(tmp_path / "q", SMALL, ["train.epochs=1", "train.augment=true"]))
    assert plain["test_loss"] != augmented["test_loss"] and augmented["test_acc"] > 0.85
