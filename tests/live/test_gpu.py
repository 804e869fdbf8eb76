"""The GPU path on a real CUDA device: every model learns, bf16 autocast, captured steps, fused
optimizers, checkpoints that move between GPU and CPU, NCCL. Skipped where CUDA is absent
(CI has no GPU); run on a GPU node with `pytest tests/live/test_gpu.py`."""

import json

import pytest
import torch
import yaml

from conftest import DATA, ROOT
from dlhpc.plan import experiment
from dlhpc.spec.load import load_spec
from dlhpc.train.loop import Trainer, train_trial

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

# Test accuracy after one epoch of each shipped workshop spec (CPU runs give 92.0 / 97.5 / 98.3 / 99.1 %).
ONE_EPOCH_FLOOR = {"softmax": 0.90, "mlp": 0.965, "lenet5": 0.975, "cnn": 0.985}


def shipped_trial(tmp_path, model, *sets):
    spec = load_spec(
        ROOT / "jobs" / f"mnist-{model}.yaml",
        [f"runs_dir={tmp_path / 'runs'}", f"data.root={DATA}", "resources.gpus_per_node=1", *sets],
        use_site=False,
    )
    p = experiment.materialize(experiment.plan(spec))
    return p.exp_dir / p.trials[0].id


@pytest.mark.parametrize("model", sorted(ONE_EPOCH_FLOOR))
def test_each_model_learns_in_one_epoch_on_cuda(tmp_path, model):
    result = train_trial(shipped_trial(tmp_path, model, "train.epochs=1"))
    assert result["device"].startswith("cuda:")
    assert result["cuda_graphs"] is True  # shipped specs use SGD on one rank: captured steps
    assert result["test_acc"] >= ONE_EPOCH_FLOOR[model], result


def test_bf16_autocast_is_on_where_supported(tmp_path):
    trainer = Trainer(shipped_trial(tmp_path, "cnn"))
    if not torch.cuda.is_bf16_supported():
        assert trainer.amp_dtype is None
        return
    assert trainer.amp_dtype == torch.bfloat16
    model = torch.nn.Linear(4, 2).cuda()
    with torch.autocast("cuda", dtype=trainer.amp_dtype):
        assert model(torch.randn(3, 4, device="cuda")).dtype == torch.bfloat16


def first_epoch(trial):
    return json.loads((trial / "metrics.jsonl").read_text().splitlines()[0])


def test_captured_steps_compute_what_eager_steps_compute(tmp_path):
    # Four full batches (graph replays) and a partial one (eager into the captured gradients),
    # in fp32 without dropout: both ways must give the same losses, up to cuDNN's rounding. (Over
    # a whole epoch the two drift apart like any two runs; a few steps show whether they agree.)
    sets = ("train.epochs=1", "train.precision=fp32", "data.train_subset=544")
    g_trial = shipped_trial(tmp_path / "g", "lenet5", *sets, "train.cuda_graphs=true")
    e_trial = shipped_trial(tmp_path / "e", "lenet5", *sets, "train.cuda_graphs=false")
    graphed, eager = train_trial(g_trial), train_trial(e_trial)
    assert graphed["cuda_graphs"] is True and eager["cuda_graphs"] is False
    g, e = first_epoch(g_trial), first_epoch(e_trial)
    for key in ("train_loss", "test_loss"):
        assert abs(g[key] - e[key]) <= 0.01 * e[key], (key, g[key], e[key])


class StopAfterFirstCheckpoint(Trainer):
    def save_checkpoint(self, *args, **kwargs):
        super().save_checkpoint(*args, **kwargs)
        raise SystemExit("stopped after the first checkpoint")


def set_gpus(trial, gpus):
    spec = yaml.safe_load((trial / "spec.yaml").read_text())
    spec["resources"]["gpus_per_node"] = gpus
    (trial / "spec.yaml").write_text(yaml.safe_dump(spec))


@pytest.mark.parametrize("first,then", [(1, 0), (0, 1)], ids=["gpu-to-cpu", "cpu-to-gpu"])
def test_checkpoint_resumes_on_the_other_device(tmp_path, first, then):
    sets = ("train.epochs=2", "data.train_subset=20000", "model.width=8", "train.ema_decay=0.9")
    reference = train_trial(shipped_trial(tmp_path / "ref", "cnn", *sets, f"resources.gpus_per_node={then}"))
    trial = shipped_trial(tmp_path, "cnn", *sets)
    set_gpus(trial, first)
    with pytest.raises(SystemExit):
        StopAfterFirstCheckpoint(trial).run()
    set_gpus(trial, then)
    result = train_trial(trial)
    assert result["device"].startswith("cuda:" if then else "cpu:")
    assert result["resumed_from_epoch"] == 1 and result["epochs_done"] == 2
    epochs = [json.loads(line)["epoch"] for line in (trial / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2]
    assert result["test_acc"] >= 0.97
    assert abs(result["test_acc"] - reference["test_acc"]) <= 0.01, (result["test_acc"], reference["test_acc"])


def test_nccl_single_rank_initialises_and_reduces(tmp_path):
    import torch.distributed as dist

    from dlhpc.node import rendezvous
    from dlhpc.node.identity import Identity

    meeting = rendezvous.meet(Identity(rank=0, world_size=1, job_id="nccl-test"), tmp_path, timeout_s=30)
    dist.init_process_group("nccl", store=meeting.store, rank=0, world_size=1)
    try:
        assert dist.get_backend() == "nccl"
        t = torch.full((4,), 3.0, device="cuda")
        dist.all_reduce(t)
        dist.barrier()
        assert t.tolist() == [3.0] * 4
    finally:
        dist.destroy_process_group()
