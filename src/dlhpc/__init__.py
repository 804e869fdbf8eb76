"""dlhpc: YAML experiment specs -> SLURM/PBS batch jobs -> DDP MNIST training -> tables."""

__version__ = "0.1.0"
