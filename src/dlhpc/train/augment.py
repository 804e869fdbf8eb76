"""Data augmentation on the resident tensors, a batch at a time, on whatever device they live.

Each image of a batch gets its own random affine map (shift, rotation, scale), applied with
`affine_grid` + `grid_sample`, so there is no per-image Python loop and nothing leaves the device.
The randomness comes from a generator seeded by (seed, rank, epoch, step), not from a stream that
runs through the whole training: a run resumed from a checkpoint sees exactly the batches the
uninterrupted run would have seen.
"""

import math

import torch
import torch.nn.functional as F


class Augment:
    def __init__(self, shift_px: float, rotate_deg: float, scale: float, seed: int, rank: int = 0):
        self.shift, self.rotate, self.scale = float(shift_px), math.radians(rotate_deg), float(scale)
        self.seed, self.rank = int(seed), int(rank)

    def seed_for(self, epoch: int, step: int) -> int:
        value = 0
        for part in (self.seed, self.rank, epoch, step):
            value = (value * 1_000_003 + int(part) + 1) % (2**62)
        return value

    def __call__(self, xb: torch.Tensor, epoch: int, step: int) -> torch.Tensor:
        n, _, h, w = xb.shape
        generator = torch.Generator().manual_seed(self.seed_for(epoch, step))
        u = (torch.rand(n, 4, generator=generator) * 2 - 1).to(xb.device)  # uniform in [-1, 1)
        angle, zoom = u[:, 0] * self.rotate, 1 + u[:, 1] * self.scale
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        # affine_grid works in [-1, 1] coordinates: a shift of k pixels is 2k / size
        tx, ty = u[:, 2] * self.shift * 2 / w, u[:, 3] * self.shift * 2 / h
        theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
        grid = F.affine_grid(theta, (n, 1, h, w), align_corners=False)
        # border padding: MNIST's border pixels are background, whatever the normalisation
        out = F.grid_sample(
            xb.float(), grid.to(torch.float32), mode="bilinear", padding_mode="border", align_corners=False
        )
        fmt = (
            torch.channels_last
            if xb.is_contiguous(memory_format=torch.channels_last) and n > 1
            else torch.contiguous_format
        )
        return out.to(xb.dtype).contiguous(memory_format=fmt)


def from_config(cfg: dict, rank: int) -> Augment | None:
    if not cfg.get("augment"):
        return None
    return Augment(cfg["augment_shift_px"], cfg["augment_rotate_deg"], cfg["augment_scale"], cfg["seed"], rank)
