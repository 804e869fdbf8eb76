"""What runs on the compute nodes around the user's program: who each rank is (identity), where
the ranks meet (rendezvous), the torchrun contract each rank is started with (contract), and the
runner that starts the program on this node's ranks, forwards the time-limit signal and records
how it ended (runner). Imports no torch at import time, nothing from train/ or schedulers/."""
