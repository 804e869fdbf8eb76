"""The spec's keys, their types, allowed values and defaults (docs/spec.md).

Hand-written rather than pydantic: it keeps `dlhpc validate` fast on a busy login node and lets
every message name the YAML file, line and key path the value came from.
"""

import math
import re

from dlhpc.schedulers import NAMES as SCHEDULERS  # names only: imports no backend
from dlhpc.spec.yamlsource import retyped_text


class Invalid(ValueError):
    """A value is not allowed; the message says what is allowed. `subpath` points inside the
    value (a list index, a mapping key) so the error can name that line."""

    def __init__(self, message, subpath=()):
        super().__init__(message)
        self.subpath = tuple(subpath)


class Field:
    default = None
    allowed = "a value"

    def check(self, value):
        return value


class Int(Field):
    def __init__(self, default, lo=None, hi=None):
        self.default, self.lo, self.hi = default, lo, hi
        self.allowed = _range_text("an integer", lo, hi)

    def check(self, value):
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(f"must be {self.allowed}, got {_show(value)}")
        if (self.lo is not None and value < self.lo) or (self.hi is not None and value > self.hi):
            raise Invalid(f"must be {self.allowed}, got {_show(value)}")
        return int(value)


class Float(Field):
    def __init__(self, default, lo=None, hi=None, lo_open=False):
        self.default, self.lo, self.hi, self.lo_open = default, lo, hi, lo_open
        self.allowed = _range_text("a number", lo, hi, lo_open)

    def check(self, value):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise Invalid(f"must be {self.allowed}, got {_show(value)}")
        value = float(value)
        too_low = self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo)
        if too_low or (self.hi is not None and value > self.hi):
            raise Invalid(f"must be {self.allowed}, got {value:g}")
        return value


class Bool(Field):
    allowed = "true or false"

    def __init__(self, default):
        self.default = default

    def check(self, value):
        if not isinstance(value, bool):
            raise Invalid(f"must be true or false, got {_show(value)}")
        return value


class AutoBool(Field):
    """true, false, or "auto" (dlhpc decides from the device and the run)."""

    allowed = 'true, false or "auto"'

    def __init__(self, default="auto"):
        self.default = default

    def check(self, value):
        if not isinstance(value, bool) and value != "auto":
            raise Invalid(f"must be {self.allowed}, got {_show(value)}")
        return value


class Choice(Field):
    def __init__(self, default, choices):
        self.default, self.choices = default, tuple(choices)
        self.allowed = "one of " + ", ".join(self.choices)

    def check(self, value):
        if value not in self.choices:
            import difflib

            near = difflib.get_close_matches(str(value), self.choices, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise Invalid(f"must be {self.allowed}, got {_show(value)}{hint}")
        return value


class Str(Field):
    """Text that names something (an account, a path, a value for the job's environment): it must
    reach the script exactly as typed, so a number YAML read from other text is refused."""

    def __init__(self, default, pattern, allowed):
        self.default, self.pattern, self.allowed = default, re.compile(pattern), allowed

    def check(self, value):
        typed_as = retyped_text(value)
        if typed_as is not None:
            raise Invalid(
                f'YAML reads {typed_as} as the number {value!r}, not the text you typed; put it in quotes: "{typed_as}"'
            )
        if isinstance(value, bool):
            raise Invalid(f'YAML reads this as {str(value).lower()}, not text; put it in quotes, e.g. "{value}"')
        if isinstance(value, (int, float)):
            value = str(value)
        if not isinstance(value, str) or not self.pattern.fullmatch(value):
            raise Invalid(f"must be {self.allowed}, got {_show(value)}")
        return value


class Optional(Field):
    def __init__(self, inner):
        self.inner, self.default = inner, None
        self.allowed = f"null or {inner.allowed}"

    def check(self, value):
        return None if value is None else self.inner.check(value)


class List(Field):
    def __init__(self, item, default=(), min_len=0, max_len=1000):
        self.item, self.default, self.min_len, self.max_len = item, list(default), min_len, max_len
        self.allowed = f"a list of {item.allowed}"

    def check(self, value):
        if not isinstance(value, list) or not (self.min_len <= len(value) <= self.max_len):
            n = f" with {self.min_len} to {self.max_len} items" if self.min_len else ""
            raise Invalid(f"must be {self.allowed}{n}, got {_show(value)}")
        out = []
        for i, item in enumerate(value):
            try:
                out.append(self.item.check(item))
            except Invalid as exc:
                raise Invalid(f"item {i}: {exc}", (i,) + exc.subpath) from None
        return out


class Map(Field):
    def __init__(self, key_pattern, key_allowed, value):
        self.key_pattern, self.key_allowed, self.value = re.compile(key_pattern), key_allowed, value
        self.default = {}
        self.allowed = f"a mapping of {key_allowed} to {value.allowed}"

    def check(self, value):
        if not isinstance(value, dict):
            raise Invalid(f"must be {self.allowed}, got {_show(value)}")
        out = {}
        for k, v in value.items():
            if not self.key_pattern.fullmatch(str(k)):
                raise Invalid(f"key {str(k)!r} is not allowed: keys must be {self.key_allowed}", (k,))
            try:
                out[str(k)] = self.value.check(v)
            except Invalid as exc:
                raise Invalid(f"{k}: {exc}", (k,) + exc.subpath) from None
        return out


class Time(Field):
    """SLURM walltime forms: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS → 'D-HH:MM:SS'."""

    allowed = 'a walltime like "00:30:00", "2-00:00:00" or minutes as an integer, at most 365 days'
    _re = re.compile(r"(?:(\d{1,3})-)?(\d{1,7})(?::(\d{1,2}))?(?::(\d{1,2}))?")

    def __init__(self, default):
        self.default = default

    def check(self, value):
        seconds = parse_time(value)
        if seconds is None or seconds <= 0 or seconds > MAX_TIME_S:
            raise Invalid(f"must be {self.allowed}, got {_show(value)}")
        return format_time(seconds)


class Mem(Field):
    allowed = 'memory like "4G", "500M" or "1T" (per node, at most 64T)'
    _re = re.compile(r"(\d{1,12})\s*([KMGT]?)B?", re.IGNORECASE)

    def __init__(self, default):
        self.default = default

    def check(self, value):
        m = (
            self._re.fullmatch(str(value).strip())
            if isinstance(value, (str, int)) and not isinstance(value, bool)
            else None
        )
        mem = m and f"{int(m.group(1))}{(m.group(2) or 'M').upper()}"  # SLURM reads a bare number as MB
        if not mem or int(m.group(1)) <= 0 or mem_megabytes(mem) > MAX_MEM_MB:
            raise Invalid(f"must be {self.allowed}, got {_show(value)}")
        return mem


MAX_TIME_S = 365 * 86400  # no scheduler grants more; bounds the arithmetic on hostile input
MAX_MEM_MB = 64 * 1024 * 1024


def parse_time(value):
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value * 60 if 0 < value <= MAX_TIME_S // 60 else None
    if not isinstance(value, str):
        return None
    m = Time._re.fullmatch(value.strip())
    if not m:
        return None
    days, a, b, c = m.groups()
    a, b, c = int(a), int(b) if b else None, int(c) if c else None
    if days is not None:  # D-HH[:MM[:SS]]
        h, mi, s = a, b or 0, c or 0
        total = int(days) * 86400 + h * 3600 + mi * 60 + s
        return None if mi > 59 or s > 59 else total
    if b is None:  # minutes
        return a * 60
    if c is None:  # MM:SS
        return None if b > 59 else a * 60 + b
    return None if b > 59 or c > 59 else a * 3600 + b * 60 + c


def format_time(seconds: int) -> str:
    days, rest = divmod(int(seconds), 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    hms = f"{h:02d}:{m:02d}:{s:02d}"
    return f"{days}-{hms}" if days else hms


def mem_megabytes(mem: str) -> int:
    n, unit = int(mem[:-1]), mem[-1]
    return n * {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}[unit]


def _num(x) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _range_text(kind, lo, hi, lo_open=False):
    if lo is not None and hi is not None:
        return f"{kind} > {_num(lo)} and <= {_num(hi)}" if lo_open else f"{kind} from {_num(lo)} to {_num(hi)}"
    if lo is not None:
        return f"{kind} {'>' if lo_open else '>='} {_num(lo)}"
    if hi is not None:
        return f"{kind} <= {_num(hi)}"
    return kind


def _show(value):
    try:
        text = repr(value)
    except ValueError:  # an int too long to print (Python's digit limit)
        return "a number too long to print"
    return text if len(text) <= 60 else text[:57] + "..."


# Values that end up in #SBATCH/#PBS directives are validated to these sets, then quoted too.
SAFE_WORD = r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}"
NAME = Str(None, r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", "1 to 64 of A-Z a-z 0-9 . _ - starting with a letter or digit")
PARTITION = Str(
    None, rf"{SAFE_WORD}(,{SAFE_WORD})*", "a partition name (letters, digits, . _ + -; comma-separated list allowed)"
)
WORD = Str(None, SAFE_WORD, "a name of letters, digits, . _ + -")


class Partitions(Field):
    """resources.partition: one name; SLURM's comma-separated list (SLURM starts the job in
    whichever frees first, as it waits); or a YAML list, of which dlhpc picks, at each
    submission, the one the scheduler promises the earliest start (spec/load.py keeps the list
    as Spec.partition_choices, and the partition as its comma form until one is picked)."""

    def __init__(self):
        self.default, self.names = None, List(WORD, min_len=1, max_len=16)
        self.allowed = f"{PARTITION.allowed}, or a list of them (the earliest start is picked)"

    def check(self, value):
        return self.names.check(value) if isinstance(value, list) else PARTITION.check(value)


CONSTRAINT = Str(
    None,
    r"[A-Za-z0-9._+\-&|,:*\[\]()! ]{1,256}",
    "a SLURM constraint expression (letters, digits, & | , : * [ ] ( ) !)",
)
PATH = Str(None, r"[^\x00\n\r]{1,4096}", "a path without newlines")
SHELL_LINE = Str(None, r"[^\x00\n\r]{0,4096}", "one line of shell without newlines")
ENV_VALUE = Str(None, r"[^\x00\n\r]{0,4096}", "a string without newlines (numbers and booleans are written as text)")
DIRECTIVE_VALUE = Optional(Str(None, r"[^\x00\n\r#]{0,512}", "a value without newlines or '#'"))

MODELS = ("softmax", "mlp", "lenet5", "cnn")


class ParamValue(Field):
    """A program's parameter: a number, text, true/false, null, or a list or mapping of them (at
    most 4 levels deep); it reaches the program as JSON (DLHPC_PARAMS) and through `args`."""

    allowed = "a number, text, true/false, null, or a list or mapping of them"

    def check(self, value, depth=0):
        if depth > 4:
            raise Invalid("nests too deep (at most 4 levels)")
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            if not math.isfinite(value):
                raise Invalid(f"must be a finite number, got {value}")
            return float(value)
        if isinstance(value, list):
            return [self.check(v, depth + 1) for v in value]
        if isinstance(value, dict):
            return {str(k): self.check(v, depth + 1) for k, v in value.items()}
        raise Invalid(f"must be {self.allowed}, got {_show(value)}")


PARAM_NAME = r"[A-Za-z_][A-Za-z0-9_]{0,63}"
PARAM = ParamValue()
# A program's command-line argument: one line of text ({params.NAME} is replaced per trial).
ARG = Str(None, r"[^\x00\n\r]{0,4096}", "one argument (text without newlines; {params.NAME} is replaced)")
MODULE = Str(None, r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", "a Python module like mypkg.train")
ENTRY = Str(
    None,
    r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*",
    "a function as module:function, like mypkg.train:main",
)
STOP_SIGNALS = ("TERM", "USR1", "USR2", "INT")
CONTAINER_RUNTIMES = ("apptainer", "singularity", "podman", "charliecloud", "enroot", "pyxis")
IMAGE = Str(
    None,
    r"[^\x00\n\r\s]{1,4096}",
    "an image: a .sif or squashfs file, a rootfs folder, or a reference like docker://nvcr.io/nvidia/pytorch:24.05-py3",
)
BIND = Str(None, r"/[^\x00\n\r:]{0,4095}(:/[^\x00\n\r:]{0,4095})?(:ro)?", "an absolute path, or SRC:DST[:ro]")

SAMPLERS = ("tpe", "random", "grid", "cmaes")  # Optuna's samplers (search/study.py)
PRUNERS = ("asha", "hyperband", "median", "none")

SCHEMA = {
    "name": NAME,
    "model": {
        "name": Choice("cnn", MODELS),
        "hidden": Optional(List(Int(None, 1, 65536), min_len=1, max_len=16)),
        "width": Optional(Int(None, 1, 1024)),
        "stem": Choice("pool", ("pool", "stride")),
        "dropout": Optional(Float(None, 0, 0.9)),
        "convs_per_block": Int(1, 1, 3),
    },
    "train": {
        "epochs": Int(10, 1, 100_000),
        "batch_size": Int(128, 1, 1_000_000),
        "optimizer": Choice("sgd", ("sgd", "adam", "adamw", "adadelta")),
        "lr": Float(0.05, 0, 1000, lo_open=True),
        "momentum": Float(0.9, 0, 1),
        "nesterov": Bool(True),
        "weight_decay": Float(0.0005, 0, 10),
        "label_smoothing": Float(0.0, 0, 0.5),
        "schedule": Choice("onecycle", ("onecycle", "step", "constant")),
        "step_gamma": Float(0.7, 0, 1, lo_open=True),
        "warmup_frac": Float(0.2, 0, 0.9),
        "seed": Int(0, 0, 2**31 - 1),
        "precision": Choice("auto", ("auto", "fp32", "bf16")),
        "target_accuracy": Float(0.99, 0, 1, lo_open=True),
        "stop_at_target": Bool(False),
        "ema_decay": Optional(Float(None, 0, 1, lo_open=True)),
        "compile": Bool(False),
        "cuda_graphs": AutoBool("auto"),
        "eval_batch_size": Optional(Int(None, 1, 1_000_000)),
        "augment": Bool(False),
        "augment_shift_px": Float(2.0, 0, 8),
        "augment_rotate_deg": Float(10.0, 0, 45),
        "augment_scale": Float(0.1, 0, 0.5),
    },
    "program": {
        "script": Optional(PATH),
        "module": Optional(MODULE),
        "entry": Optional(ENTRY),
        "args": List(ARG, max_len=1000),
        "code": Optional(PATH),
        "code_max_mb": Int(100, 1, 100_000),
        "python": Optional(PATH),
        "stop_signal": Choice("TERM", STOP_SIGNALS),
        "grace_s": Int(60, 1, 3600),
    },
    "params": Map(PARAM_NAME, "parameter names (letters, digits, _)", PARAM),
    "data": {
        "name": Choice("mnist", ("mnist",)),
        "root": Optional(PATH),
        "download": Bool(True),
        "train_subset": Optional(Int(None, 1, 60000)),
    },
    "resources": {
        "scheduler": Choice("local", SCHEDULERS),
        "nodes": Int(1, 1, 4096),
        "gpus_per_node": Int(0, 0, 64),
        "tasks_per_node": Optional(Int(None, 1, 512)),
        "cpus_per_task": Int(2, 1, 4096),
        "mem": Mem("4G"),
        "time": Time("00:30:00"),
        "partition": Optional(Partitions()),
        "account": Optional(WORD),
        "qos": Optional(WORD),
        "constraint": Optional(CONSTRAINT),
        "reservation": Optional(WORD),
        "exclude": List(Str(None, r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}", "a node name like n2 or gpu-014"), max_len=1000),
        "array_parallelism": Int(16, 1, 1_000_000),
        "trials_per_task": Optional(Int(None, 1, 100_000)),
        "report": Bool(False),
        "pbs": {"flavor": Choice("openpbs", ("openpbs", "torque"))},
        "signal_margin_s": Int(120, 10, 3600),
        "timeout_requeues": Int(3, 0, 1000),
        "retry": {
            "automatic": Bool(False),
            "max_retries": Int(3, 0, 100),
            "exit_codes": List(Int(None, 1, 255), max_len=50),
            "factor": Float(2.0, 1.0, 100.0),
            "max_mem": Optional(Mem(None)),
            "max_time": Optional(Time(None)),
        },
        "timeouts": {
            "node": Int(60, 5, 86400),
            "rendezvous": Int(300, 10, 86400),
            "collective": Int(600, 10, 86400),
        },
        "stall": {
            "factor": Float(5.0, 1.0, 1000.0),
            "min_s": Int(300, 5, 86400),
            "action": Choice("wait", ("wait", "fail", "requeue")),
            "requeues": Int(2, 0, 100),
        },
        "extra": Map(r"[A-Za-z][A-Za-z0-9_-]{0,63}", "directive names like mail-type", DIRECTIVE_VALUE),
    },
    "env": {
        "modules": List(
            Str(None, r"[A-Za-z0-9][A-Za-z0-9._+/@:-]{0,255}", "a module name like python/3.11"), max_len=100
        ),
        "setup": List(SHELL_LINE, max_len=200),
        "vars": Map(r"[A-Za-z_][A-Za-z0-9_]{0,127}", "shell variable names", ENV_VALUE),
        "container": {
            "image": Optional(IMAGE),
            "runtime": Optional(Choice(None, CONTAINER_RUNTIMES)),
            "binds": List(BIND, max_len=100),
            "gpus": AutoBool("auto"),
            "python": Str("python3", r"[^\x00\n\r\s]{1,4096}", "an interpreter inside the image, e.g. python3"),
            "options": List(ARG, max_len=100),
        },
    },
    "tracking": {"tensorboard": Bool(False)},
    "template": Optional(Str(None, r"[^\x00\n\r]{1,4096}", "a template name (see `dlhpc templates list`) or a path")),
    "runs_dir": PATH,
    "share": Choice("private", ("private", "group")),
    "sweep": None,  # checked by sweep.py: dotted key -> list
    # adaptive search instead of a grid (spec/search.py checks the space; docs/search.md)
    "search": {
        "trials": Optional(Int(None, 1, 100_000)),
        "parallel": Int(4, 1, 10_000),
        "sampler": Choice("tpe", SAMPLERS),
        "seed": Int(0, 0, 2**31 - 1),
        "metric": Optional(Str(None, r"[A-Za-z_][A-Za-z0-9_.]{0,63}", "a metric name the program logs, e.g. test_acc")),
        "direction": Optional(Choice(None, ("maximize", "minimize"))),
        "pruner": {
            "kind": Choice("asha", PRUNERS),
            "min_epochs": Int(1, 1, 100_000),
            "reduction": Int(3, 2, 100),
            "keep_checkpoints": Bool(False),
            "resume": Bool(False),
        },
        "lost_after_s": Float(300.0, 5.0, 7 * 86400.0),
        "space": None,  # checked by spec/search.py: dotted key -> a distribution
    },
}

SCHEMA_PROGRAM = SCHEMA["program"]
# The built-in trainer's sections: a spec that names its own program sets `params` instead.
BUILTIN_SECTIONS = ("model", "train", "data")


def defaults_of(field):
    """A field's default; a nested section's, key by key (each its own: resources.retry has no
    `flavor`, only resources.pbs does)."""
    if field is None:  # a mapping checked elsewhere (sweep, search.space)
        return {}
    return {k: defaults_of(f) for k, f in field.items()} if isinstance(field, dict) else field.default


DEFAULTS = {
    "name": "experiment",
    "model": {"name": "cnn", "hidden": None, "width": None},
    "train": {k: f.default for k, f in SCHEMA["train"].items()},
    "program": {k: f.default for k, f in SCHEMA_PROGRAM.items()},
    "params": {},
    "data": {"name": "mnist", "root": None, "download": True, "train_subset": None},
    "resources": {k: defaults_of(f) for k, f in SCHEMA["resources"].items()},
    "env": {
        "modules": [],
        "setup": [],
        "vars": {},
        "container": {k: f.default for k, f in SCHEMA["env"]["container"].items()},
    },
    "tracking": {"tensorboard": False},
    "template": None,
    "runs_dir": "runs",
    "share": "private",
    "sweep": {},
}

# Site-only settings: allowed in the site file alone (charge rates, template dir, cost cap).
SITE_SCHEMA = {
    "template_dir": Optional(PATH),
    "charge_rates": {
        "core_hour": Optional(Float(None, 0)),
        "gpu_hour": Optional(Float(None, 0)),
        "unit": Optional(Str(None, r"[A-Za-z][A-Za-z0-9 _-]{0,31}", "a unit name like SU")),
    },
    "max_cost": Optional(Float(None, 0)),
    "partitions": Map(
        SAFE_WORD, "partition names", Optional(Str(None, r"[A-Za-z0-9._ -]{1,64}", "a GPU type like a100"))
    ),
    "allow_login_node_runs": Bool(False),
    "policy": {
        "partitions": Optional(List(WORD, min_len=1)),
        "accounts": Optional(List(WORD, min_len=1)),
        "qos": Optional(List(WORD, min_len=1)),
        "max_nodes": Optional(Int(None, 1)),
        "max_gpus_per_node": Optional(Int(None, 0)),
        "max_total_gpus": Optional(Int(None, 0)),
        "max_time": Optional(Time(None)),
        "max_mem": Optional(Mem(None)),
        "max_array_size": Optional(Int(None, 1)),
        "container_images": Optional(List(IMAGE, min_len=1)),
        "required": List(Str(None, r"[a-z_]+(\.[a-z_]+)+", "a dotted spec key like resources.account"), max_len=50),
    },
}

# `search:` is absent from a spec that does not search (its data, and so its hash, unchanged); one
# that searches has every key of it, these filled in (spec/search.py).
SEARCH_DEFAULTS = defaults_of(SCHEMA["search"])

SWEEPABLE_EXCLUDED = {"name", "runs_dir", "share", "sweep", "search", "program", "params", "tracking"}
# Keys renamed since a release: the message names the new key.
RENAMED = {"output": "runs_dir", "resources.pbs_flavor": "resources.pbs.flavor"}


def leaf_fields(schema=SCHEMA, prefix=()):
    """Yield (path tuple, Field) for every leaf key."""
    for key, value in schema.items():
        if isinstance(value, dict):
            yield from leaf_fields(value, prefix + (key,))
        elif value is not None:
            yield prefix + (key,), value


LEAVES = dict(leaf_fields())


def sweep_field(parts: tuple) -> Field | None:
    """The field a swept dotted key checks its values with: a spec key, or params.NAME."""
    if len(parts) == 2 and parts[0] == "params" and re.fullmatch(PARAM_NAME, parts[1]):
        return PARAM
    if parts in LEAVES and parts[0] not in SWEEPABLE_EXCLUDED:
        return LEAVES[parts]
    return None


def settable_field(key, cannot: str, shape: str):
    """The field of a key a sweep or a search may set; else one line: `cannot` 'KEY': no such spec
    key (did you mean ...?); `shape`."""
    field = sweep_field(tuple(str(key).split(".")))
    if field is not None:
        return field
    import difflib

    candidates = [".".join(p) for p in LEAVES if p[0] not in SWEEPABLE_EXCLUDED]
    near = difflib.get_close_matches(str(key), candidates, n=1, cutoff=0.6)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    from dlhpc.errors import UserError

    raise UserError(f"{cannot} {key!r}: no such spec key{hint}; {shape}")


# What every key means: docs/spec.md is generated from these (`python -m dlhpc.spec.docs`), and a
# test fails if a key has none or the file is stale. Keep each to a sentence or two.
DOCS = {
    "name": "Names the experiment: its directory is `<runs_dir>/<name>-<date>-<time>`; its jobs carry the name.",
    "model.name": "Which workshop model: `softmax` (a linear layer, softmax regression), `mlp` (hidden layers), "
    "`lenet5` (convolution and pooling), `cnn` (a small fast CNN with batch norm).",
    "model.hidden": "mlp: the widths of the hidden layers (null: [200, 100]); cnn: the width of its one hidden "
    "layer, as a one-item list (null: [256]).",
    "model.width": "cnn only: channels of the first convolution (the second has twice as many); null means 32.",
    "model.stem": "cnn only: `pool` (5x5 convolution, then 2x2 max-pool) or `stride` (one 4x4 convolution of "
    "stride 2: a quarter of the arithmetic, for speed).",
    "model.dropout": "cnn only: dropout before the last layer; null means 0.25.",
    "model.convs_per_block": "cnn only: convolutions per block; each one past the first is a 3x3 convolution "
    "(same size, same channels) with batch norm and ReLU: a deeper, slower, more accurate cnn.",
    "train.epochs": "Passes over the training set.",
    "train.batch_size": "Images per step per DDP rank; the global batch is this times the number of ranks.",
    "train.optimizer": "The optimizer.",
    "train.lr": "Learning rate (the peak of the onecycle schedule).",
    "train.momentum": "SGD momentum (onecycle cycles it between 0.85 and this, except with CUDA graphs).",
    "train.nesterov": "Nesterov momentum for sgd.",
    "train.weight_decay": "L2 weight decay.",
    "train.label_smoothing": "Cross-entropy label smoothing.",
    "train.schedule": "Learning-rate schedule: `onecycle` (warm up, then anneal, per step), `step` (times "
    "`step_gamma` each epoch) or `constant`.",
    "train.step_gamma": "Decay per epoch of the `step` schedule.",
    "train.warmup_frac": "Share of the onecycle schedule spent warming up.",
    "train.seed": "Seeds the weights, the data order and dropout: the same seed gives the same batches, "
    "resumed or not.",
    "train.precision": "`auto`: bf16 autocast on GPUs that support it, fp32 on CPUs; `fp32`; `bf16` (also on CPU).",
    "train.target_accuracy": "The test accuracy whose first reaching is recorded as time_to_target_s.",
    "train.stop_at_target": "Stop after the first evaluation at or above target_accuracy (a speed run).",
    "train.augment": "Randomly shift, rotate and scale each training image, a batch at a time on the device "
    "(seeded per step: a resumed run sees the same batches). Turns CUDA graphs off under `auto`.",
    "train.augment_shift_px": "With augment: the largest shift, in pixels, each way.",
    "train.augment_rotate_deg": "With augment: the largest rotation, in degrees, each way.",
    "train.augment_scale": "With augment: the largest change of size (0.1: 90% to 110%).",
    "train.ema_decay": "Evaluate an exponential moving average of the weights with this decay (e.g. 0.99); "
    "null evaluates the weights themselves.",
    "train.compile": "`torch.compile` the model before training (the compile time is reported apart, as compile_s).",
    "train.cuda_graphs": "Capture the training step as CUDA graphs and replay them: `auto` turns it on for one "
    "CUDA rank with sgd and compile off (about 9x faster for these small models).",
    "train.eval_batch_size": "Test-set batch size; null: the whole test set at once on a GPU, 1000 on a CPU.",
    "program.script": "Your training script (a path relative to the spec), run with `python SCRIPT ARGS` on "
    "every rank, as torchrun would (docs/own-code.md). Set one of script, module or entry; none: dlhpc's "
    "built-in MNIST trainer (model, train, data).",
    "program.module": "Your training module, run as `python -m MODULE ARGS` on every rank.",
    "program.entry": "A function `module:function` called on every rank with the trial's params as a dict.",
    "program.args": "Arguments after the script or module; `{params.NAME}` is replaced by the trial's value "
    "(`{{` and `}}` for literal braces).",
    "program.code": "The folder copied into the experiment at submit, which the jobs run (so editing it later "
    "changes nothing queued); null: the script's folder, or the spec's for module and entry. In a git "
    "repository only tracked and untracked-not-ignored files are copied.",
    "program.code_max_mb": "Refuse a code folder larger than this many MB (data belongs elsewhere).",
    "program.python": "The interpreter that runs the program on the nodes (a venv's or conda env's "
    "bin/python); null: the one dlhpc was submitted with.",
    "program.stop_signal": "The signal each rank gets `resources.signal_margin_s` before the time limit (and on "
    "preemption), before the job requeues: TERM (as torchrun forwards), USR1, USR2 or INT.",
    "program.grace_s": "Seconds the ranks get after the stop signal to save and exit before they are killed "
    "and the job requeues.",
    "params": "Your program's parameters (name: value), given to it as $DLHPC_PARAMS (JSON), `dlhpc.trial.params` "
    "and `{params.NAME}` in program.args; sweep and --set reach them as params.NAME.",
    "data.name": "The data set (MNIST: 60,000 training and 10,000 test images).",
    "data.root": "Folder holding MNIST/raw/ (the four IDX files); null: $DLHPC_DATA, else ~/.cache/dlhpc/data.",
    "data.download": "Download missing files (checksummed) where the trials run on this machine; cluster jobs "
    "never download: run `dlhpc data fetch` on the login node.",
    "data.train_subset": "Train on the first N training images only (smoke tests); null: all 60,000.",
    "resources.scheduler": "Where the trials run: `slurm`, `pbs`, or `local` (this machine, no scheduler).",
    "resources.nodes": "Nodes per trial; ranks are nodes x tasks_per_node.",
    "resources.gpus_per_node": "GPUs per node; 0 is a CPU job.",
    "resources.tasks_per_node": "DDP ranks per node; null: one per GPU, else one.",
    "resources.cpus_per_task": "CPU cores per rank (also its thread count).",
    "resources.mem": "Memory per node, SLURM-style (`4G`, `500M`).",
    "resources.time": "Walltime per trial (`HH:MM:SS`, `D-HH:MM:SS`, or minutes).",
    "resources.partition": "SLURM partition or PBS queue; null: the cluster's default. A list ([gpu-a100, gpu-v100]): "
    "at each submission (and retry) dlhpc sends each job group to the one the scheduler promises the earliest start "
    "(sbatch --test-only; PBS: queue limits, jobs queued, free nodes), says why and records it. SLURM's own comma form "
    '("a,b") is left to SLURM, which starts the job wherever it can first as it waits.',
    "resources.account": "Account (project) to charge.",
    "resources.qos": "SLURM quality of service.",
    "resources.reservation": "A reservation to run in (a workshop's allocation, usually): SLURM's "
    "`--reservation`, PBS's reservation (its name or id: the jobs go to its queue). Checked before "
    "submitting: it exists, can take jobs, has time left for resources.time, and lets you in.",
    "resources.constraint": "SLURM node features (`--constraint`).",
    "resources.array_parallelism": "At most this many trials of a sweep run at once (the array's `%N`).",
    "resources.trials_per_task": "Trials run one after another in each array task (packing many short trials into "
    "fewer jobs; the task's walltime is this many times `time`). null: one, or as many as a scheduler limit on "
    "the number of jobs requires (said at submit). Ignored by the local scheduler.",
    "resources.report": "Write summary.md, summary.csv and curves.png into the experiment when all its jobs have "
    "ended: a small one-core job the scheduler starts afterany (the local runner writes them when it is done).",
    "resources.pbs.flavor": "PBS only: `openpbs` (PBS Pro / OpenPBS) or `torque`.",
    "resources.signal_margin_s": "Seconds before the time limit at which the job is told to checkpoint and requeue.",
    "resources.timeout_requeues": "Requeues allowed on reaching the time limit (preemptions are not counted).",
    "resources.retry.automatic": "Retry a failed trial without a command: a one-core job that follows the trials' "
    "jobs (afterany) resubmits the ones that ran out of memory or time (with more, as below), lost a node (off it, "
    "where enough nodes are left), were preempted or exited with one of exit_codes (unchanged), up to max_retries "
    "each. Any other failure (a Python error, a missing file, a cancel) is never retried. See docs/faults.md.",
    "resources.retry.max_retries": "How many times resources.retry.automatic may retry one trial.",
    "resources.retry.exit_codes": "Exit codes of your program that mean 'run me again' (e.g. 85): with "
    "resources.retry.automatic, a trial that exits with one is retried unchanged, from its checkpoint.",
    "resources.retry.factor": "A trial that ran out of memory (or time) is resubmitted (dlhpc resubmit) with this "
    "many times its resources.mem (resources.time), up to the cap below and the site policy's maximum.",
    "resources.retry.max_mem": "The most memory a resubmission may raise resources.mem to; null: never raised.",
    "resources.retry.max_time": "The longest walltime a resubmission may raise resources.time to; null: never raised.",
    "resources.exclude": "Nodes the jobs must not run on (SLURM --exclude; on PBS the job is pinned to other hosts). "
    "`dlhpc resubmit --failed` adds a node that was lost under a trial, while enough others are left.",
    "resources.timeouts.node": "Seconds a node of a multi-node trial may go without a word to the others (its runner "
    "sends one every few seconds) before it is taken as lost: the others end their ranks and the trial FAILS naming it "
    "(a node whose processes were killed is seen at once). See docs/faults.md.",
    "resources.timeouts.rendezvous": "Seconds the ranks wait for each other to start and meet.",
    "resources.timeouts.collective": "Seconds one collective (all-reduce, barrier) may wait for the other ranks before "
    "the built-in trainer fails (DLHPC_COLLECTIVE_TIMEOUT_S, for your own program's init_process_group).",
    "resources.stall.factor": "A running trial is STALLED when no epoch ended for this many times its longest epoch "
    "so far (judged once an epoch has ended; see docs/faults.md).",
    "resources.stall.min_s": "...and for at least this many seconds.",
    "resources.stall.action": "wait: say so in status and why, and let it run; fail: end the trial (resubmit "
    "resumes it from its checkpoint); requeue: requeue its job, which resumes from the checkpoint (SLURM, PBS; "
    "as fail where there is no scheduler).",
    "resources.stall.requeues": "With action requeue: how many times a trial may be requeued for stalling before "
    "it fails instead.",
    "resources.extra": "More scheduler directives, `name: value` (null value: a bare flag), added after quoting.",
    "env.modules": "Modules to `module load` before training (skipped, with a note in job.err, where no "
    "`module` command exists).",
    "env.setup": "Shell lines run before training, as written (trusted input).",
    "env.vars": "Environment variables exported before training (values quoted).",
    "env.container.image": "Run the program (the built-in trainer or yours) in this image: a .sif or squashfs "
    "file, a rootfs folder (Charliecloud), or a registry reference (podman, enroot); null: no container. The "
    "batch script, rank launch, signals and requeue stay on the host (docs/containers.md).",
    "env.container.runtime": "apptainer, singularity, podman, charliecloud, enroot or pyxis (SLURM: each rank's "
    "program as an srun step in the image); null: guessed from the "
    "image (.sif: apptainer, a folder: charliecloud, .sqsh: enroot, a reference: podman).",
    "env.container.binds": "More host paths to bind (`/scratch`, or `SRC:DST[:ro]`); the experiment, the data "
    "folder and dlhpc's own code (read-only) are bound by dlhpc.",
    "env.container.gpus": "Give the container the node's GPUs (`--nv`, `--device nvidia.com/gpu=all`...): "
    "`auto` when the trial asks for GPUs.",
    "env.container.python": "The interpreter inside the image that runs the program.",
    "env.container.options": "More arguments for the runtime's run command, before the image (e.g. "
    "`--writable-tmpfs` for apptainer).",
    "tracking.tensorboard": "Write TensorBoard event files in each trial's folder while it runs (every number "
    "of metrics.jsonl per epoch, the trial's parameters in the HParams tab; a requeued trial continues the same "
    "run); `dlhpc tensorboard` serves them. Needs `pip install dlhpc[tracking]` (docs/tracking.md).",
    "template": "Job-script template: a name from `dlhpc templates list` or a file path; null: the scheduler's.",
    "runs_dir": "Folder that holds experiment directories (also `--runs-dir`, $DLHPC_RUNS_DIR or the user "
    "config); relative paths are relative to where dlhpc runs.",
    "share": "Who may read the experiment directory: `private` (you alone, mode 0700) or `group` (your group may "
    "read, 0750); nobody but you may ever write in it (docs/security.md).",
    "sweep": "Dotted keys to lists of values; the trials are every combination, run as a job array.",
    "search.trials": "Configurations to try in all (required to search); each is one trial of the experiment.",
    "search.parallel": "Agents working the study at once: array tasks, each running one trial after another.",
    "search.sampler": "How the next configuration is chosen: tpe (Bayesian), random, grid (every combination of "
    "choice and int keys), cmaes (numbers only).",
    "search.seed": "Seed of the sampler; with it a search draws the same configurations again (trial by trial).",
    "search.metric": "What the search optimizes: a key the program logs each epoch (built-in: test_acc, test_loss, "
    "train_loss, train_acc); default test_acc for the built-in trainer.",
    "search.direction": "maximize or minimize; default: minimize a metric named like a loss or error, else maximize.",
    "search.pruner.kind": "When a trial is stopped early: asha (asynchronous successive halving), hyperband, median "
    "(below the median of earlier trials at that epoch), or none.",
    "search.pruner.min_epochs": "Epochs (or logged steps) every trial runs before it may be pruned; ASHA's first rung.",
    "search.pruner.reduction": "ASHA and Hyperband keep the best 1/reduction of the trials at each rung.",
    "search.pruner.keep_checkpoints": "Keep a pruned trial's checkpoint (removed by default: it is not resumed).",
    "search.pruner.resume": "asha only, the built-in trainer: a trial below the cut at a rung waits there with its "
    "checkpoint and is resumed once it is in the top 1/reduction of enough trials (ASHA as published), instead of "
    "being stopped for good at once.",
    "search.lost_after_s": "A trial whose agent has given no sign of life for this long is taken over by another "
    "agent (once); it resumes from its checkpoint.",
    "search.space": "Dotted keys (as sweep's) to a distribution: {uniform: [lo, hi]}, {loguniform: [lo, hi]}, "
    "{int: [lo, hi], step: k, log: false} or {choice: [a, b, ...]}.",
}

SITE_DOCS = {
    "template_dir": "Folder of site templates, searched before the shipped ones (relative to the site file).",
    "charge_rates.core_hour": "Charge units per core-hour.",
    "charge_rates.gpu_hour": "Charge units per GPU-hour.",
    "charge_rates.unit": "Name of the charge unit (e.g. SU).",
    "max_cost": "Refuse a submission whose estimated cost exceeds this (users may pass a lower --max-cost).",
    "partitions": "Partition (queue) name to GPU model, for templates that need it.",
    "allow_login_node_runs": "Let `dlhpc run` (and local submits) train on the login node without `--here`.",
    "policy.partitions": "Partitions (queues) jobs may use; null: any.",
    "policy.accounts": "Accounts jobs may charge; null: any.",
    "policy.qos": "SLURM QOS jobs may ask for; null: any.",
    "policy.max_nodes": "Most nodes one trial may ask for.",
    "policy.max_gpus_per_node": "Most GPUs per node one trial may ask for.",
    "policy.max_total_gpus": "Most GPUs one trial may ask for in all (nodes x gpus_per_node).",
    "policy.max_time": "Longest walltime one trial may ask for.",
    "policy.max_mem": "Most memory per node one trial may ask for.",
    "policy.max_array_size": "Most trials one submission may have.",
    "policy.container_images": "The container images jobs must run in (env.container.image); null: any, or none.",
    "policy.required": "Spec keys every job must set, e.g. [resources.account].",
}
