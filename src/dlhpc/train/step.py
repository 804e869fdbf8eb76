"""One pass over a rank's shard: gather a batch from the resident tensors, forward, backward,
optimizer step. Two ways to run it, chosen by `train.cuda_graphs`:

  EagerSteps    plain PyTorch, on any device. On a GPU a small model's step is bound by how fast
                Python can launch kernels (tens of kernels, a few microseconds each).
  GraphedSteps  CUDA only, one rank, SGD: the whole training step is captured once as a CUDA
                graph and replayed per batch, with the next batch gathered on a side stream
                inside the same graph, so a step costs one launch and never waits for data.
                (The PyTorch "whole-network capture" recipe; the optimizer's learning rate is
                a device tensor so the schedule can change it between replays.)

Both accumulate the summed loss and the number of correct predictions on the device and never
synchronise inside the epoch. Both time what the step waits for its batch against the whole
step (StepClock): on a GPU with CUDA events on every 8th step, read once at the end of the epoch.
Eager steps wait for the gather itself; captured steps only for the copy of the next indices.
"""

import time

import torch
import torch.nn.functional as F

SAMPLE_EVERY = 8  # GPU steps timed with events: enough for a share, too few to cost anything


class StepClock:
    """Seconds spent gathering batches and seconds spent in whole steps."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.fetch_s = self.step_s = 0.0
        self._marks = []  # CUDA: (start, fetched, done) event triples
        self._t0 = self._t1 = 0.0

    def start(self, i):
        if self.cuda:
            self._current = None
            if i % SAMPLE_EVERY == 0:
                self._current = [torch.cuda.Event(enable_timing=True) for _ in range(3)]
                self._current[0].record()
        else:
            self._t0 = time.perf_counter()

    def fetched(self):
        if self.cuda:
            if self._current:
                self._current[1].record()
        else:
            self._t1 = time.perf_counter()

    def stepped(self):
        if self.cuda:
            if self._current:
                self._current[2].record()
                self._marks.append(self._current)
        else:
            t2 = time.perf_counter()
            self.fetch_s += self._t1 - self._t0
            self.step_s += t2 - self._t0

    def fetch_share(self) -> float:
        """Call after the device has finished the epoch (the caller has synchronised)."""
        if self.cuda:
            for start, fetched, done in self._marks:
                self.fetch_s += start.elapsed_time(fetched) / 1000
                self.step_s += start.elapsed_time(done) / 1000
            self._marks = []
        return self.fetch_s / self.step_s if self.step_s > 0 else 0.0


class EagerSteps:
    def __init__(self, model, optimizer, x, y, batch_size, amp_dtype, label_smoothing, device):
        self.model, self.optimizer, self.x, self.y = model, optimizer, x, y
        self.bs, self.amp_dtype, self.label_smoothing, self.device = batch_size, amp_dtype, label_smoothing, device
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device, dtype=torch.long)

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)

    def gather(self, idx):
        # A gather per batch: the batch is still in cache when the forward pass reads it,
        # which measured cheaper on CPU than shuffling the whole shard once per epoch.
        return self.x.index_select(0, idx), self.y.index_select(0, idx)

    def _forward_backward(self, xb, yb, set_to_none=True):
        with self._autocast():
            out = self.model(xb)
            loss = F.cross_entropy(out, yb, label_smoothing=self.label_smoothing)
        self.optimizer.zero_grad(set_to_none=set_to_none)
        loss.backward()
        self.optimizer.step()
        self.loss_sum += loss.detach() * len(yb)
        self.correct += (out.detach().argmax(1) == yb).sum()

    def run_epoch(self, idx_all, after_step, augment=None) -> StepClock:
        """All batches of one epoch; `after_step` runs after each optimizer step (schedule, EMA);
        `augment(xb, step)` transforms each batch (train.augment)."""
        self.model.train()
        self.loss_sum.zero_()
        self.correct.zero_()
        clock = StepClock(self.device)
        for i, start in enumerate(range(0, len(idx_all), self.bs)):
            clock.start(i)
            xb, yb = self.gather(idx_all[start : start + self.bs])
            clock.fetched()
            if augment is not None:  # arithmetic on the device, like the forward pass: part of the step
                xb = augment(xb, i)
            self._forward_backward(xb, yb)
            after_step()
            clock.stepped()
        return clock


class GraphedSteps(EagerSteps):
    """Full batches replay captured graphs; a last, smaller batch runs eager into the same
    gradient tensors.

    Two graphs alternate over two batch buffers: graph p trains on buffer p while a side stream
    inside the same graph gathers the next batch into the other buffer, so the step never waits
    for its data. Per step the host writes the next batch's indices and launches one graph."""

    WARMUP_STEPS = 3  # the CUDA graph docs ask for a few eager iterations on a side stream

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._capture()

    def _autocast(self):
        # no cast cache: cached bf16 copies of the weights must not outlive the capture
        return torch.autocast("cuda", dtype=self.amp_dtype, enabled=self.amp_dtype is not None, cache_enabled=False)

    @staticmethod
    def supported(device, world_size: int, optimizer_name: str) -> bool:
        return device.type == "cuda" and world_size == 1 and optimizer_name == "sgd"

    def _gather_into(self, k: int):
        torch.index_select(self.x, 0, self.idx[k], out=self.xbuf[k])
        torch.index_select(self.y, 0, self.idx[k], out=self.ybuf[k])

    def _capture(self):
        model, opt, bs, dev = self.model, self.optimizer, self.bs, self.device
        self.idx = [torch.zeros(bs, dtype=torch.long, device=dev) for _ in range(2)]
        self.xbuf = [torch.empty((bs, *self.x.shape[1:]), dtype=self.x.dtype, device=dev) for _ in range(2)]
        self.ybuf = [torch.empty((bs, *self.y.shape[1:]), dtype=self.y.dtype, device=dev) for _ in range(2)]
        saved = _snapshot(model, opt)
        model.train()
        main, self.prefetch = torch.cuda.current_stream(dev), torch.cuda.Stream(dev)
        side = torch.cuda.Stream(dev)
        side.wait_stream(main)
        with torch.cuda.stream(side):  # warm-up: cuDNN picks its algorithms, optimizer state exists
            for _ in range(self.WARMUP_STEPS):
                self._gather_into(0)
                self._forward_backward(self.xbuf[0], self.ybuf[0])
        main.wait_stream(side)

        self.graphs = []
        for p in (0, 1):
            q = 1 - p
            opt.zero_grad(set_to_none=True)  # each graph allocates (and keeps) its own gradients
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                capturing = torch.cuda.current_stream(dev)
                self.prefetch.wait_stream(capturing)  # fork: the gather joins this capture
                with torch.cuda.stream(self.prefetch):
                    self._gather_into(q)
                self._forward_backward(self.xbuf[p], self.ybuf[p])
                capturing.wait_stream(self.prefetch)  # join
            self.graphs.append(graph)
        _restore(model, opt, saved)  # the warm-up steps never happened

    def run_epoch(self, idx_all, after_step, augment=None) -> StepClock:
        assert augment is None, "augmentation runs eager (the loop turns graphs off for it)"
        self.model.train()
        self.loss_sum.zero_()
        self.correct.zero_()
        clock = StepClock(self.device)
        n_full = len(idx_all) // self.bs
        full = idx_all[: n_full * self.bs].view(n_full, self.bs)
        for k in range(n_full):
            p = k % 2
            clock.start(k)
            if k == 0:  # the first batch of the epoch has nobody to prefetch it
                self.idx[0].copy_(full[0])
                self._gather_into(0)
            if k + 1 < n_full:  # (after the last full batch the prefetch reads stale indices: unused)
                self.idx[1 - p].copy_(full[k + 1])
            clock.fetched()
            self.graphs[p].replay()
            after_step()
            clock.stepped()
        rest = idx_all[n_full * self.bs :]
        if len(rest):
            clock.start(n_full)
            xb, yb = self.gather(rest)
            clock.fetched()
            # accumulate into the captured gradient tensors, which the graphs keep using
            self._forward_backward(xb, yb, set_to_none=False)
            after_step()
            clock.stepped()
        return clock


def _snapshot(model, optimizer) -> dict:
    return {
        "model": {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()},
        "optimizer": {
            p: {k: v.clone() for k, v in s.items() if torch.is_tensor(v)} for p, s in optimizer.state.items()
        },
    }


@torch.no_grad()
def _restore(model, optimizer, saved: dict):
    """Put weights, buffers and optimizer state back in place (the graphs hold their addresses).
    Momentum buffers that the warm-up created are zeroed: with no dampening, a zero buffer gives
    the same first update as no buffer at all."""
    for k, v in model.state_dict(keep_vars=True).items():
        v.copy_(saved["model"][k])
    for p, state in optimizer.state.items():
        before = saved["optimizer"].get(p, {})
        for k, v in state.items():
            if torch.is_tensor(v) and k in before:
                v.copy_(before[k])
            elif torch.is_tensor(v):
                v.zero_()
