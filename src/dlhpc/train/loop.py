"""Train one trial: data on the device, DDP when world_size > 1, a checkpoint every epoch.

How it runs:
    one process      python -m dlhpc.train runs/exp/000-abc123
    N on one node    python -m dlhpc.train --nproc 4 runs/exp/000-abc123   (or torchrun ... -m dlhpc.train)
    N x M nodes      the job script's `srun` (SLURM) or pbs_launch (PBS) starts one rank per task;
                     each rank finds its rank and the rendezvous in the job environment (dist.py)

The trial directory holds spec.yaml (the resolved spec); training writes metrics.jsonl (one line
per epoch, rank 0 only), checkpoint.pt and result.json, each atomically. A run that finds a
checkpoint resumes after its epoch, and its metrics.jsonl keeps every epoch exactly once.
"""

import io
import json
import math
import os
import socket
import time
import traceback
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dlhpc.fsutil import atomic_write_bytes, atomic_write_json, atomic_write_text
from dlhpc.train import data as mnist
from dlhpc.train import dist as dist_env
from dlhpc.train.augment import from_config as augmentation
from dlhpc.train.models import build, is_convolutional
from dlhpc.train.step import EagerSteps, GraphedSteps

CHECKPOINT = "checkpoint.pt"


def load_trial_spec(trial_dir: Path) -> dict:
    """The trial's resolved spec, over today's defaults (a spec written by an older dlhpc may
    lack keys added since)."""
    import copy

    from dlhpc.fsutil import read_trial_spec
    from dlhpc.spec.schema import DEFAULTS

    spec = copy.deepcopy(DEFAULTS)
    for section, values in read_trial_spec(trial_dir / "spec.yaml").items():
        if isinstance(values, dict) and isinstance(spec.get(section), dict):
            spec[section].update(values)
        else:
            spec[section] = values
    return spec


def pick_device(denv, gpus_per_node: int) -> torch.device:
    if torch.cuda.is_available() and gpus_per_node != 0:
        return torch.device("cuda", denv.local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def autocast_dtype(precision: str, device: torch.device):
    if device.type == "cuda" and precision in ("auto", "bf16") and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if device.type == "cpu" and precision == "bf16":
        return torch.bfloat16
    return None


def software(device: torch.device) -> dict:
    """The versions training ran with on the node (the login node's are in experiment.json)."""
    out = {"torch": torch.__version__, "cuda": torch.version.cuda}
    if device.type == "cuda":
        out["cudnn"] = torch.backends.cudnn.version()
        try:
            out["nccl"] = ".".join(map(str, torch.cuda.nccl.version()))
        except (AttributeError, RuntimeError):
            out["nccl"] = None
    return out


def gpu_utilization(device: torch.device) -> float | None:
    """The driver's busy percentage of this GPU over its last sample period (NVML), where it reports it."""
    if device.type != "cuda":
        return None
    try:
        return float(torch.cuda.utilization(device))
    except Exception:  # no NVML binding, or a driver that does not say
        return None


def _mean(values):
    values = [v for v in values if v is not None]
    return round(sum(values) / len(values), 1) if values else None


def make_optimizer(cfg: dict, params, device: torch.device, graphed: bool = False):
    """On a GPU the fused kernels (one launch for all parameters). A captured step needs the
    learning rate as a device tensor, so the schedule can change it between graph replays."""
    name, lr, wd = cfg["optimizer"], cfg["lr"], cfg["weight_decay"]
    fused = {"fused": True} if device.type == "cuda" else {}
    if name == "sgd":
        lr = torch.tensor(lr, device=device) if graphed else lr
        return torch.optim.SGD(
            params,
            lr=lr,
            momentum=cfg["momentum"],
            nesterov=cfg["nesterov"] and cfg["momentum"] > 0,
            weight_decay=wd,
            **fused,
        )
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd, **fused)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd, **fused)
    return torch.optim.Adadelta(params, lr=lr, weight_decay=wd)


# Optimizer settings that belong to this process's device, not to the checkpoint's.
DEVICE_SETTINGS = ("fused", "foreach", "capturable", "differentiable")


def load_optimizer_state(optimizer, state: dict):
    """Load a checkpoint's optimizer state written on any device: keep this run's device
    settings (a GPU's fused kernels mean nothing on a CPU) and the type of its learning rate."""
    own = [{k: g[k] for k in (*DEVICE_SETTINGS, "lr") if k in g} for g in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, kept in zip(optimizer.param_groups, own, strict=True):
        saved_lr = group["lr"]
        group.update({k: v for k, v in kept.items() if k != "lr"})
        if torch.is_tensor(kept.get("lr")):
            kept["lr"].fill_(float(saved_lr))
            group["lr"] = kept["lr"]
        else:
            group["lr"] = float(saved_lr)
        for key in DEVICE_SETTINGS:
            if key not in kept:
                group.pop(key, None)


def make_schedule(cfg: dict, optimizer, steps_per_epoch: int, cycle_momentum: bool = True):
    """Returns (scheduler, steps per scheduler.step()): onecycle steps per batch, step per epoch.
    A captured step has its momentum fixed in the graph, so it runs without momentum cycling."""
    total = cfg["epochs"] * steps_per_epoch
    if cfg["schedule"] == "onecycle" and total >= 3:  # (the warm-up needs a step of its own)
        sched = torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=cfg["lr"],
            total_steps=total,
            pct_start=max(cfg["warmup_frac"], 1.5 / total),
            anneal_strategy="linear",
            div_factor=10.0,
            final_div_factor=100.0,
            cycle_momentum=cycle_momentum and cfg["optimizer"] == "sgd" and cfg["momentum"] > 0,
            base_momentum=0.85,
            max_momentum=max(cfg["momentum"], 0.85) if cfg["momentum"] else 0.9,
        )
        return sched, "batch"
    if cfg["schedule"] == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=cfg["step_gamma"]), "epoch"
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0), "epoch"


def shard_permutation(n: int, seed: int, epoch: int, rank: int, world: int) -> torch.Tensor:
    """DistributedSampler semantics: one seeded permutation per epoch, padded to a multiple of the
    world size, each rank taking every world-th index. Depends on (seed, epoch) only, so a
    resumed run sees exactly the batches the uninterrupted run would have."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(n, generator=g)
    total = math.ceil(n / world) * world
    if total > n:
        perm = torch.cat([perm, perm[: total - n]])
    return perm[rank:total:world]


class WeightAverage:
    """An exponential moving average of a model's parameters (batch-norm statistics copied).

    Updated every `every` steps with decay**every, which tracks the per-step average closely
    at a quarter of the cost."""

    def __init__(self, model: nn.Module, decay: float, every: int = 4):
        import copy

        self.source, self.every, self.steps = model, every, 0
        self.weight = 1.0 - decay**every
        self.model = copy.deepcopy(model).requires_grad_(False)
        self._dst = list(self.model.parameters())
        self._src = [p.detach() for p in model.parameters()]

    @torch.no_grad()
    def update(self):
        self.steps += 1
        if self.steps % self.every:
            return
        torch._foreach_lerp_(self._dst, self._src, self.weight)
        for dst, src in zip(self.model.buffers(), self.source.buffers(), strict=True):
            dst.copy_(src)


class _Run:
    """What one run trains with: the model and its wrappers, optimizer, schedule, step function."""

    model = step_model = eval_model = optimizer = scheduler = ema = steps = None
    sched_unit, graphed, compile_s, capture_s = "epoch", False, 0.0, 0.0

    def capture(self, data: list, amp_dtype, cfg: dict, device) -> None:
        """The step function: eager, or captured into CUDA graphs (timed: capture_s)."""
        t_capture = time.perf_counter()
        steps_cls = GraphedSteps if self.graphed else EagerSteps
        x_train, y_train = data[0], data[1]
        batch, smoothing = cfg["batch_size"], cfg["label_smoothing"]
        self.steps = steps_cls(self.step_model, self.optimizer, x_train, y_train, batch, amp_dtype, smoothing, device)
        self.capture_s = time.perf_counter() - t_capture if self.graphed else 0.0

    def after_step(self) -> None:
        if self.sched_unit == "batch":
            self.scheduler.step()
        if self.ema is not None:
            self.ema.update()


class Trainer:
    def __init__(self, trial_dir: Path, denv=None):
        self.trial_dir = Path(trial_dir)
        self.spec = load_trial_spec(self.trial_dir)
        self.cfg = self.spec["train"]
        self.denv = denv or dist_env.detect()
        self.is_main = self.denv.rank == 0
        res = self.spec["resources"]
        self.device = pick_device(self.denv, res["gpus_per_node"])
        if self.device.type == "cpu":
            torch.set_num_threads(int(os.environ.get("DLHPC_CPUS_PER_TASK") or res["cpus_per_task"]))
        else:
            torch.cuda.set_device(self.device)
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.amp_dtype = autocast_dtype(self.cfg["precision"], self.device)
        self.rank_nodes, self.rank_addresses, self.rendezvous = [dist_env.node_name()], [], ""
        # where the runner asks the program to save (the contract's DLHPC_CHECKPOINT)
        self.checkpoint_path = Path(os.environ.get("DLHPC_CHECKPOINT") or self.trial_dir / CHECKPOINT)

    # ---- files (rank 0 only) ----
    def write_result(self, **fields) -> dict:
        result = {
            "trial": self.trial_dir.name,
            "job_id": self.denv.job_id or None,
            "nodes": self.denv.num_nodes,
            "world_size": self.denv.world_size,
            "device": self.device_name(),
            "hostnames": self.denv.hostnames,
            "rank_nodes": self.rank_nodes,
            "rank_addresses": self.rank_addresses,
            "rendezvous": self.rendezvous or None,
            "software": software(self.device),
            **fields,
        }
        if self.is_main:
            atomic_write_json(self.trial_dir / "result.json", result)
        return result

    def device_name(self) -> str:
        if self.device.type == "cuda":
            return f"cuda:{torch.cuda.get_device_name(self.device)}"
        return f"cpu:{socket.gethostname()}"

    def write_metrics(self, history: list):
        if self.is_main:
            atomic_write_text(self.trial_dir / "metrics.jsonl", "".join(json.dumps(m) + "\n" for m in history))

    # ---- the run ----
    def run(self) -> dict:
        backend = "nccl" if self.device.type == "cuda" else "gloo"
        # (the runner passes resources.timeouts.collective: a peer gone silent fails the collective)
        timeout_s = float(os.environ.get("DLHPC_COLLECTIVE_TIMEOUT_S") or 600)
        self.rendezvous = dist_env.init_process_group(self.denv, backend, timeout_s=timeout_s)
        self.rank_nodes, self.rank_addresses = dist_env.gather_node_names(
            self.denv, dist_env.local_address(self.denv, self.rendezvous)
        )
        try:
            result = self._train()
        except BaseException as exc:
            if not isinstance(exc, (KeyboardInterrupt, SystemExit)):
                self.write_result(
                    state="FAILED", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc(limit=8)
                )
            dist_env.destroy_process_group()
            raise
        try:
            dist_env.leave_process_group()
        except Exception as exc:  # the run is complete and saved: a hiccup on the way out must not fail it
            print(f"note: leaving the process group: {type(exc).__name__}: {exc}", flush=True)
            dist_env.destroy_process_group()
        return result

    def _train(self) -> dict:
        """Load, build, resume, then an epoch at a time (each checkpointed, then its metrics line)."""
        cfg = self.cfg
        data, load_s = self._load_data()
        run = self._build(data)
        progress = self.restore_checkpoint(run.model, run.optimizer, run.scheduler, run.ema)
        resumed_from = progress["epoch"]
        if run.graphed and hasattr(run.scheduler, "cycle_momentum"):
            run.scheduler.cycle_momentum = False  # a checkpoint from an eager run may have had it on
        run.capture(data, self.amp_dtype, cfg, self.device)
        self.write_result(
            state="RUNNING",
            epochs=cfg["epochs"],
            epochs_done=resumed_from,
            load_s=round(load_s, 3),
            compile_s=round(run.compile_s, 3),
            cuda_graphs=run.graphed,
        )
        for epoch in range(resumed_from + 1, cfg["epochs"] + 1):
            self._epoch(run, data, epoch, progress)
            pruned = self._pruned_at(epoch)
            if pruned is not None:  # a search's pruner stopped it: the others did better at this epoch
                return self.write_result(**{**self._final(run, progress, resumed_from, load_s), "state": "PRUNED"})
            if cfg["stop_at_target"] and progress["time_to_target"] is not None:
                break  # a speed run: the target is all we came for
        return self.write_result(**self._final(run, progress, resumed_from, load_s))

    def _pruned_at(self, epoch: int):
        """Under a search: whether its agent's pruner says to stop after this epoch (rank 0 reads
        the verdict, every rank learns it, so all stop together); None to go on."""
        from dlhpc.search import verdict

        if verdict.searched_metric() is None or epoch >= self.cfg["epochs"]:
            return None  # (at the last epoch there is nothing left to save: it completes)
        told = verdict.should_stop(self.trial_dir, epoch) if self.is_main else None
        if self.denv.world_size > 1:
            flag = torch.tensor([1.0 if told else 0.0], device=self.device)
            self._all_reduce(flag)
            return (told or {"prune": True}) if flag.item() > 0 else None
        return told

    def _load_data(self) -> tuple[list, float]:
        """[x_train, y_train, x_test, y_test] on the device, and the seconds it took."""
        t_load = time.perf_counter()
        # Under bf16 autocast the first layer casts its input to bf16 anyway: keeping the images in
        # bf16 gives the same numbers, halves the bytes each batch gather moves and saves a cast.
        data = mnist.load(
            self.spec["data"]["root"],
            self.device,
            self.spec["data"]["train_subset"],
            self.spec["data"]["download"],
            dtype=self.amp_dtype,
        )
        return list(data), time.perf_counter() - t_load

    def _build(self, data: list) -> _Run:
        """The model (DDP-wrapped, compiled, averaged as the spec asks), its optimizer and schedule."""
        cfg, world = self.cfg, self.denv.world_size
        torch.manual_seed(cfg["seed"])
        run = _Run()
        model = build(self.spec["model"]).to(self.device)
        # channels_last: faster convolutions on GPUs (tensor cores) and on CPUs (oneDNN), ~1.4x here
        if is_convolutional(model):
            model = model.to(memory_format=torch.channels_last)
            data[:] = [t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t for t in data]
        run.model, run.graphed = model, self._use_cuda_graphs()
        steps_per_epoch = math.ceil(math.ceil(len(data[0]) / world) / cfg["batch_size"])
        run.optimizer = make_optimizer(cfg, model.parameters(), self.device, run.graphed)
        run.scheduler, run.sched_unit = make_schedule(
            cfg, run.optimizer, steps_per_epoch, cycle_momentum=not run.graphed
        )
        ddp = model
        if world > 1:
            ddp = nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        run.step_model = torch.compile(ddp) if cfg["compile"] else ddp
        # Optional exponential moving average of the weights, evaluated instead of the raw model:
        # it smooths out the noise of the high-learning-rate phase, so accuracy is high early.
        run.ema = WeightAverage(model, cfg["ema_decay"]) if cfg["ema_decay"] else None
        run.eval_model = run.ema.model if run.ema else model
        run.compile_s = self._warm_up(run.step_model, model, data[0], data[1]) if cfg["compile"] else 0.0
        return run

    def _epoch(self, run: _Run, data: list, epoch: int, progress: dict) -> None:
        """Train and test one epoch; checkpoint, then append its metrics line (progress is updated)."""
        cfg, x_train, _, x_test, y_test = self.cfg, *data
        t0 = time.perf_counter()
        train_loss, train_acc, seen, fetch_share = self._train_epoch(run.steps, run.after_step, len(x_train), epoch)
        step_s = time.perf_counter() - t0
        if not math.isfinite(train_loss):
            raise FloatingPointError(
                f"the training loss became {train_loss} in epoch {epoch}; "
                f"lower train.lr (now {cfg['lr']}) or use a schedule with warm-up"
            )
        if run.sched_unit == "epoch":
            run.scheduler.step()
        test_loss, test_acc = self._evaluate(run.eval_model, x_test, y_test)
        epoch_time = time.perf_counter() - t0
        progress["elapsed"] += epoch_time
        progress["best"] = max(progress["best"], test_acc)
        if progress["time_to_target"] is None and test_acc >= cfg["target_accuracy"]:
            progress["time_to_target"] = progress["elapsed"]
        progress["history"].append(
            {
                "epoch": epoch,
                "train_loss": train_loss,
                "train_acc": train_acc,
                "test_loss": test_loss,
                "test_acc": test_acc,
                "epoch_time_s": round(epoch_time, 4),
                "images_per_s": round(seen / max(step_s, 1e-9), 1),
                "lr": float(run.optimizer.param_groups[0]["lr"]),
                "world_size": self.denv.world_size,
                "elapsed_s": round(progress["elapsed"], 4),
                "batch_wait_frac": round(fetch_share, 5),
                "gpu_util": gpu_utilization(self.device),
            }
        )
        kept = {k: progress[k] for k in ("history", "elapsed", "time_to_target", "best")}
        self.save_checkpoint(epoch, run.model, run.optimizer, run.scheduler, run.ema, kept)
        self.write_metrics(progress["history"])
        if self.is_main:
            print(
                f"epoch {epoch}/{cfg['epochs']} train_loss {train_loss:.4f} test_loss {test_loss:.4f} "
                f"test_acc {test_acc:.4f} ({epoch_time:.2f} s, {progress['history'][-1]['images_per_s']:.0f} img/s)",
                flush=True,
            )

    def _final(self, run: _Run, progress: dict, resumed_from: int, load_s: float) -> dict:
        cfg, history, time_to_target = self.cfg, progress["history"], progress["time_to_target"]
        last = history[-1]
        return {
            "state": "COMPLETED",
            "epochs": cfg["epochs"],
            "epochs_done": last["epoch"],
            "test_acc": last["test_acc"],
            "test_loss": last["test_loss"],
            "best_test_acc": progress["best"],
            "time_to_target_s": None if time_to_target is None else round(time_to_target, 4),
            "target_accuracy": cfg["target_accuracy"],
            "train_time_s": round(progress["elapsed"], 4),
            "images_per_s": round(sum(m["images_per_s"] for m in history) / len(history), 1),
            "load_s": round(load_s, 3),
            "compile_s": round(run.compile_s, 3),
            "capture_s": round(run.capture_s, 3),
            "cuda_graphs": run.graphed,
            "gpu_util_mean": _mean([m.get("gpu_util") for m in history]),
            "resumed_from_epoch": resumed_from or None,
        }

    def _use_cuda_graphs(self) -> bool:
        """`auto`: on where it is supported (one CUDA rank, SGD, no torch.compile); `true` where it
        is not falls back to eager with a note rather than failing the run."""
        wanted = self.cfg["cuda_graphs"]
        supported = (
            GraphedSteps.supported(self.device, self.denv.world_size, self.cfg["optimizer"])
            and not self.cfg["compile"]
            and not self.cfg["augment"]
        )
        if wanted is True and not supported and self.is_main:
            print(
                "note: train.cuda_graphs needs one CUDA rank, optimizer sgd, compile and augment off; running eager",
                flush=True,
            )
        return bool(wanted) and supported

    # ---- checkpoints: what save writes, restore reads ----
    def save_checkpoint(self, epoch, model, optimizer, scheduler, ema, progress: dict):
        if not self.is_main:
            return
        state = {
            "epoch": epoch,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "ema": ema.model.state_dict() if ema else None,
            "ema_steps": ema.steps if ema else 0,
            "scheduler": scheduler.state_dict(),
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
            **progress,
        }
        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write_bytes(self.checkpoint_path, buf.getvalue())

    def restore_checkpoint(self, model, optimizer, scheduler, ema) -> dict:
        """Load the last checkpoint, if any, into the objects given (written on a GPU or a CPU,
        either way round); returns the progress to carry on from (epoch 0 for a fresh run)."""
        fresh = {"epoch": 0, "history": [], "elapsed": 0.0, "time_to_target": None, "best": 0.0}
        path = self.checkpoint_path
        if not path.is_file():
            return fresh
        # weights_only: a checkpoint is tensors and numbers; loading it never runs code, whoever wrote it
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(ckpt["model"])
        if ema is not None and ckpt.get("ema") is not None:
            ema.model.load_state_dict(ckpt["ema"])
            ema.steps = ckpt.get("ema_steps", 0)
        load_optimizer_state(optimizer, ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        torch.set_rng_state(ckpt["rng_cpu"])
        if self.device.type == "cuda" and ckpt.get("rng_cuda") is not None:
            torch.cuda.set_rng_state(ckpt["rng_cuda"], self.device)
        self.write_metrics(ckpt["history"])  # drop any line written after the checkpoint was taken
        return {k: ckpt[k] for k in fresh}

    def _warm_up(self, step_model, model, x, y) -> float:
        """Compile before the clock starts: one forward and backward, then put back the weights,
        batch-norm statistics and RNG state, so the run is the one it would have been.
        Returns the seconds spent (reported as compile_s, outside time-to-target)."""
        import copy

        t0 = time.perf_counter()
        saved, rng = copy.deepcopy(model.state_dict()), torch.get_rng_state()
        step_model.train()
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            loss = F.cross_entropy(step_model(x[: self.cfg["batch_size"]]), y[: self.cfg["batch_size"]])
        loss.backward()
        model.load_state_dict(saved)
        model.zero_grad(set_to_none=True)
        torch.set_rng_state(rng)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - t0

    def _train_epoch(self, steps, after_step, n, epoch):
        """One pass over this rank's shard; loss and accuracy summed on the device, synced once."""
        cfg = self.cfg
        idx_all = shard_permutation(n, cfg["seed"], epoch, self.denv.rank, self.denv.world_size).to(self.device)
        augment = augmentation(cfg, self.denv.rank)
        clock = steps.run_epoch(idx_all, after_step, (lambda xb, step: augment(xb, epoch, step)) if augment else None)
        stats = torch.stack(
            [steps.loss_sum.float(), steps.correct.float(), torch.tensor(float(len(idx_all)), device=self.device)]
        )
        self._all_reduce(stats)
        seen = stats[2].item()  # the one synchronisation of the epoch
        return stats[0].item() / seen, stats[1].item() / seen, seen, clock.fetch_share()

    @torch.inference_mode()
    def _evaluate(self, model, x, y):
        """The full test set, split across ranks, reduced; the same number on every rank.
        eval_batch_size null: the whole shard in one batch on a GPU, 1000 images at a time on a CPU."""
        model.eval()
        world, rank = self.denv.world_size, self.denv.rank
        per = math.ceil(len(x) / world)
        xs, ys = x[rank * per : (rank + 1) * per], y[rank * per : (rank + 1) * per]
        bs = self.cfg["eval_batch_size"] or (max(len(xs), 1) if self.device.type == "cuda" else 1000)
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device)
        for start in range(0, len(xs), bs):
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                out = model(xs[start : start + bs])
            loss_sum += F.cross_entropy(out.float(), ys[start : start + bs], reduction="sum")
            correct += (out.argmax(1) == ys[start : start + bs]).sum()
        stats = torch.stack([loss_sum, correct])
        self._all_reduce(stats)
        return stats[0].item() / len(x), stats[1].item() / len(x)

    def _all_reduce(self, tensor):
        if self.denv.world_size > 1:
            import torch.distributed as dist

            dist.all_reduce(tensor)


def train_trial(trial_dir, denv=None) -> dict:
    return Trainer(Path(trial_dir), denv).run()
