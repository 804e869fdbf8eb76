"""SLURM's compressed host lists (`n[01-04],gpu7`), expanded without asking SLURM: the
launcher and the training ranks need them on nodes where `scontrol` may be missing."""

import re


def expand_hostlist(text: str) -> list[str]:
    """SLURM's compressed host lists, as `scontrol show hostnames` expands them:
    'n[1-3,7],gpu01' → ['n1', 'n2', 'n3', 'n7', 'gpu01'], 'rack[1-2]n[01-02]' → all four
    (zero padding kept; several bracket groups in one name multiply)."""
    hosts = []
    for name in _split_top_level(text or ""):
        hosts += _expand_name(name)
    return hosts


def _split_top_level(text: str) -> list[str]:
    """Split at the commas that are outside brackets."""
    names, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += (ch == "[") - (ch == "]")
        if ch == "," and depth == 0:
            names.append(text[start:i])
            start = i + 1
    names.append(text[start:])
    return [n for n in names if n]


def _expand_name(name: str) -> list[str]:
    m = re.search(r"\[([^\]]*)\]", name)
    if not m:
        return [name]
    head, tail = name[: m.start()], name[m.end() :]
    out = []
    for part in m.group(1).split(","):
        lo, _, hi = part.partition("-")
        width = len(lo)
        for i in range(int(lo), int(hi or lo) + 1):
            out += [f"{head}{i:0{width}d}{rest}" for rest in _expand_name(tail)]
    return out
