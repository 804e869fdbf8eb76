"""A small DDP training script written the way torchrun scripts are (after pytorch/examples'
distributed/ddp-tutorial-series/multigpu_torchrun.py): it reads its rank from the environment,
calls init_process_group() with the default env://, saves a snapshot every epoch and loads it
at start. It runs unchanged under `torchrun --nproc-per-node 2 train.py` and under dlhpc.

The data is made here (two interleaved spirals, seeded), so the example needs no download.
Using dlhpc's helper is optional: without dlhpc installed the script still runs.
"""

import argparse
import math
import os
import sys
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

try:
    from dlhpc import trial  # optional: metrics for dlhpc's tables, and its stop signal
except ImportError:
    trial = None


def spirals(n: int, seed: int, noise: float = 0.05) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    label = torch.randint(0, 2, (n,), generator=g)
    t = torch.rand(n, generator=g) * 2 * math.pi + 0.5
    angle = t + label * math.pi
    x = torch.stack([t * torch.cos(angle), t * torch.sin(angle)], 1) / 5
    return x + noise * torch.randn(n, 2, generator=g), label


class Trainer:
    def __init__(self, args, rank: int, world: int):
        self.args, self.rank, self.world = args, rank, world
        torch.manual_seed(args.seed)
        self.model = nn.Sequential(nn.Linear(2, args.width), nn.Tanh(), nn.Linear(args.width, args.width), nn.Tanh(),
                                   nn.Linear(args.width, 2))  # fmt: skip
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=args.lr, momentum=0.9)
        self.epochs_run = 0
        self.x, self.y = spirals(4096, seed=1)
        self.x_test, self.y_test = spirals(1024, seed=2)
        if os.path.exists(args.snapshot):
            self._load_snapshot(args.snapshot)
        self.ddp = DDP(self.model)

    def _load_snapshot(self, path):
        snapshot = torch.load(path, weights_only=True)  # tensors and ints only: even torch 1.13 reads it so
        self.model.load_state_dict(snapshot["MODEL_STATE"])
        for param, buffer in zip(self.model.parameters(), snapshot["MOMENTUM"], strict=True):
            self.optimizer.state[param]["momentum_buffer"] = buffer.clone()
        self.epochs_run = snapshot["EPOCHS_RUN"]
        print(f"rank {self.rank}: resuming from snapshot at epoch {self.epochs_run}", flush=True)

    def _save_snapshot(self, epoch):
        snapshot = {  # SGD's state is its momentum; the learning rate is constant
            "MODEL_STATE": self.model.state_dict(),
            "MOMENTUM": [self.optimizer.state[p]["momentum_buffer"] for p in self.model.parameters()],
            "EPOCHS_RUN": epoch,
        }
        tmp = self.args.snapshot + ".tmp"
        torch.save(snapshot, tmp)
        os.replace(tmp, self.args.snapshot)  # a kill while saving leaves the previous snapshot whole

    def _run_epoch(self, epoch) -> tuple[float, bool]:
        order = torch.randperm(len(self.x), generator=torch.Generator().manual_seed(self.args.seed * 1000 + epoch))
        mine = order[self.rank :: self.world]
        total, steps = 0.0, 0
        for start in range(0, len(mine), self.args.batch_size):
            index = mine[start : start + self.args.batch_size]
            self.optimizer.zero_grad()
            loss = F.cross_entropy(self.ddp(self.x[index]), self.y[index])
            loss.backward()
            self.optimizer.step()
            total, steps = total + loss.item(), steps + 1
            time.sleep(self.args.step_sleep)  # stands in for a bigger model (the tests' time limits)
            if trial and trial.should_checkpoint():
                return total / steps, True  # the time limit is near: stop now, resume from the last snapshot
        return total / steps, False

    def _accuracy(self) -> float:
        with torch.no_grad():
            return (self.model(self.x_test).argmax(1) == self.y_test).float().mean().item()

    def train(self):
        for epoch in range(self.epochs_run, self.args.epochs):
            loss, stopped = self._run_epoch(epoch)
            if stopped:
                print(f"rank {self.rank}: asked to stop in epoch {epoch + 1}; exiting", flush=True)
                return
            if self.rank == 0:
                self._save_snapshot(epoch + 1)
                acc = self._accuracy()
                print(f"epoch {epoch + 1}/{self.args.epochs} loss {loss:.4f} test_acc {acc:.4f}", flush=True)
                if trial:
                    trial.log(epoch=epoch + 1, train_loss=loss, test_acc=acc)
            if self.rank == self.args.crash_rank and epoch + 1 == self.args.crash_epoch:
                print(f"rank {self.rank}: crashing on purpose after epoch {epoch + 1}", file=sys.stderr, flush=True)
                raise RuntimeError("a deliberate crash (--crash-rank)")
            dist.barrier()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--snapshot", default="snapshot.pt")
    parser.add_argument("--step-sleep", type=float, default=0.0)
    parser.add_argument("--crash-rank", type=int, default=-1)
    parser.add_argument("--crash-epoch", type=int, default=1)
    args = parser.parse_args()
    dist.init_process_group("gloo")  # env:// (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT)
    Trainer(args, dist.get_rank(), dist.get_world_size()).train()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
