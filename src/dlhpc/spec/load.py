"""YAML → validated Spec, with layering and `--set` overrides (docs/spec.md).

Layers, lowest first: built-in defaults < site file ($DLHPC_SITE, else /etc/dlhpc/site.yaml)
< user file (~/.config/dlhpc/config.yaml) < the spec < --set. Each layer is validated on its
own, so an error names the file and line where the bad value was written.
"""

import copy
import difflib
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from dlhpc.errors import UserError
from dlhpc.spec import program, schema
from dlhpc.spec.yamlsource import Origin, load_file, load_text, where  # noqa: F401 - where: spec.where for callers

SITE_DEFAULT = "/etc/dlhpc/site.yaml"


@dataclass
class Spec:
    """A resolved spec: plain nested dicts, plus where each value came from."""

    data: dict
    origins: dict = field(default_factory=dict)
    site: dict = field(default_factory=dict)
    source: str = "<spec>"
    # The site file as written (its path, its defaults without `site:`, and their lines): what the
    # site says holds even where a spec overrides it (the login-node guard, the site policy).
    site_file: str | None = None
    site_defaults: dict = field(default_factory=dict)
    site_origins: dict = field(default_factory=dict)
    # resources.partition given as a list: the partitions to pick the earliest start from, at each
    # submission (submission/partitions.py); data holds them comma-joined until one is picked
    partition_choices: list = field(default_factory=list)

    def get(self, dotted: str):
        node = self.data
        for part in dotted.split("."):
            node = node[part]
        return node

    @property
    def sweep(self) -> dict:
        return self.data.get("sweep") or {}

    @property
    def search(self) -> dict | None:
        """The search section, every key filled in; None for a spec that does not search."""
        return self.data.get("search") or None

    def hash(self) -> str:
        return spec_hash(self.data)


def spec_hash(data: dict) -> str:
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def site_file() -> Path | None:
    path = os.environ.get("DLHPC_SITE") or SITE_DEFAULT
    return Path(path) if Path(path).is_file() else None


def config_dir() -> Path:
    """The user's dlhpc folder: config.yaml and templates/ live here."""
    return Path(os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")) / "dlhpc"


def user_file() -> Path | None:
    path = config_dir() / "config.yaml"
    return path if path.is_file() else None


def load_spec(path, sets=(), *, use_site=True, enforce_policy=True) -> Spec:
    """Resolve a spec file through every layer. Raises UserError with file:line on any problem.
    enforce_policy=False for commands that submit nothing (status, summary, cancel...): the
    site policy governs what is submitted, not what may be read or cancelled."""
    layers = []
    site_settings: dict = {}
    site_layer = (None, {}, {})
    if use_site:
        for layer_path, is_site in ((site_file(), True), (user_file(), False)):
            if layer_path is None:
                continue
            data, origins = load_file(layer_path)
            data = _expect_mapping(data, str(layer_path))
            if not is_site and "site" in data:
                raise UserError(
                    f"{where(origins, ('site',))}: site settings belong in the site file "
                    f"($DLHPC_SITE or {SITE_DEFAULT}), not in {layer_path}"
                )
            if is_site and "site" in data:
                site_settings = _validate_site(data.pop("site"), origins)
                tdir = site_settings.get("template_dir")
                if tdir and not os.path.isabs(os.path.expanduser(tdir)):  # relative to the site file
                    site_settings["template_dir"] = str(layer_path.resolve().parent / tdir)
            if is_site:
                site_layer = (str(layer_path), data, origins)
            layers.append((data, origins))
        if os.environ.get("DLHPC_RUNS_DIR"):  # a user-level default, like the user config
            layers.append(({"runs_dir": os.environ["DLHPC_RUNS_DIR"]}, {("runs_dir",): Origin("$DLHPC_RUNS_DIR")}))
    if path is not None:
        data, origins = load_file(path)
        if data is None:
            raise UserError(
                f"{path}: the spec is empty; write the keys you want (`dlhpc init my.yaml` "
                "writes a commented starter spec)"
            )
        layers.append((_expect_mapping(data, str(path)), origins))
    layers.append(parse_sets(sets))
    spec = resolve(layers, site_settings, source=str(path) if path else "<defaults>", site_file=site_layer[0])
    spec.site_file, spec.site_defaults, spec.site_origins = site_layer
    if enforce_policy:
        from dlhpc.spec import policy

        policy.enforce(spec)
    return spec


def load_spec_text(text: str, source="<string>", sets=()) -> Spec:
    data, origins = load_text(text, source)
    return resolve([(_expect_mapping(data, source), origins), parse_sets(sets)], {}, source=source)


def resolve(layers, site_settings, source, site_file=None) -> Spec:
    merged = copy.deepcopy(schema.DEFAULTS)
    origins: dict = {}
    for data, layer_origins in layers:
        clean = validate_layer(data, layer_origins)
        _merge(merged, clean, (), layer_origins, origins)
    spec = Spec(merged, origins, site_settings, source, site_file=site_file)
    if isinstance(merged["resources"].get("partition"), list):
        spec.partition_choices = list(dict.fromkeys(merged["resources"]["partition"]))
        merged["resources"]["partition"] = ",".join(spec.partition_choices)
    _check_cross_fields(spec)
    from dlhpc.spec import search, sweep  # these checks need the merged spec (key types, trial count)

    sweep.check_sweep(spec)
    program.check(spec)
    search.check_search(spec)
    return spec


MAPPING_EXAMPLES = {"space": "search:\n    space:\n      train.lr: {loguniform: [0.001, 1.0]}"}


def validate_layer(data: dict, origins: dict, tree=None, prefix=()) -> dict:
    tree = schema.SCHEMA if tree is None else tree
    out = {}
    for key, value in data.items():
        path = prefix + (key,)
        if key not in tree:
            raise UserError(_unknown_key(key, tree, origins, path))
        sub = tree[key]
        if sub is None:  # sweep and search.space: dotted keys, checked against the merged spec
            if value is None:
                value = {}
            if not isinstance(value, dict):
                example = "sweep:\n    train.lr: [0.01, 0.1]" if key == "sweep" else MAPPING_EXAMPLES[key]
                raise UserError(f"{where(origins, path)}: must be a mapping of dotted keys, e.g.\n  {example}")
            out[key] = value
        elif isinstance(sub, dict):
            if value is None:
                continue
            if not isinstance(value, dict):
                raise UserError(
                    f"{where(origins, path)}: must be a section (a mapping) with keys "
                    f"{', '.join(sub)}; got {schema._show(value)}"
                )
            out[key] = validate_layer(value, origins, sub, path)
        else:
            try:
                out[key] = sub.check(value)
            except schema.Invalid as exc:
                line = where(origins, path + exc.subpath).rsplit(": ", 1)[0]
                raise UserError(f"{line}: {'.'.join(map(str, path))}: {exc}") from None
    return out


def _unknown_key(key, tree, origins, path) -> str:
    near = difflib.get_close_matches(str(key), [str(k) for k in tree], n=1, cutoff=0.6)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    dotted = ".".join(str(p) for p in path)
    if dotted in schema.RENAMED:
        new = schema.RENAMED[dotted]
        hint = f" ({dotted} was renamed {new}: write {new} instead)"
    parent = ".".join(str(p) for p in path[:-1])
    scope = f"in {parent}" if parent else "at the top level"
    return f"{where(origins, path)}: unknown key{hint}; allowed {scope}: {', '.join(str(k) for k in tree)}"


def _merge(base: dict, layer: dict, prefix, layer_origins, origins):
    for key, value in layer.items():
        path = prefix + (key,)
        # sections merge key by key; extra/vars/sweep/params merge too so a site can add to them
        # (a searched key's distribution is replaced whole: {uniform} over {choice} is not both)
        if isinstance(value, dict) and isinstance(base.get(key), dict) and prefix != ("search", "space"):
            _merge(base[key], value, path, layer_origins, origins)
            if key in ("extra", "vars", "sweep", "params") or not value:
                origins.setdefault(path, layer_origins.get(path))
        else:
            base[key] = copy.deepcopy(value)
            origins[path] = layer_origins.get(path) or layer_origins.get(path[:-1])
            for sub, org in layer_origins.items():  # keep line numbers of list items / sweep keys
                if sub[: len(path)] == path:
                    origins[sub] = org


def _check_extra(spec: Spec):
    from dlhpc.schedulers.directives import reserved_use

    for key, value in spec.data["resources"]["extra"].items():
        instead = reserved_use(key, value)
        if instead:
            raise UserError(
                f"{where(spec.origins, ('resources', 'extra', key))}: dlhpc writes this "
                f"directive itself, from the spec's checked values; a second one would override them. "
                f"Use {instead} instead"
            )


def _check_setup(spec: Spec):
    """env.setup is shell run as written: it must at least parse (`bash -n`), or every job
    script rendered from the spec would fail at its first line."""
    import subprocess

    lines = spec.data["env"]["setup"]
    if not lines:
        return
    try:
        proc = subprocess.run(["bash", "-n"], input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return  # no bash here to ask: the job's own bash will say
    if proc.returncode != 0:
        problem = (proc.stderr.strip().splitlines() or ["syntax error"])[-1]
        problem = problem.split(": ", 1)[-1] if problem.startswith("bash:") else problem
        raise UserError(
            f"{where(spec.origins, ('env', 'setup'))}: does not parse as shell ({problem}); "
            "each item is a line of bash, run as written"
        )


def _check_cross_fields(spec: Spec):
    _check_extra(spec)
    _check_setup(spec)
    data, origins = spec.data, spec.origins
    swept = spec.sweep
    model, hidden = data["model"]["name"], data["model"]["hidden"]
    if hidden is not None and "model.name" not in swept:
        if model not in ("mlp", "cnn"):
            raise UserError(
                f"{where(origins, ('model', 'hidden'))}: only the mlp and cnn models have hidden layers "
                f"(model.name is {model!r}); remove model.hidden or set model.name: mlp"
            )
        if model == "cnn" and len(hidden) != 1:
            raise UserError(
                f"{where(origins, ('model', 'hidden'))}: the cnn has one hidden layer: give one width, "
                f"e.g. [256] (got {len(hidden)})"
            )


def _expect_mapping(data, source):
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{source}:1: a spec must be a YAML mapping (key: value lines), got {type(data).__name__}")
    return data


class Literal(str):
    """A `--set` value taken as the text it is, not parsed as YAML (`--runs-dir '/x/r #1'`)."""


def literal_set(key: str, value: str) -> "Literal":
    return Literal(f"{key}={value}")


def parse_sets(sets) -> tuple:
    """`--set train.lr=0.1` → a layer {'train': {'lr': 0.1}}; values parsed as YAML, with the same
    limits (size, nesting, aliases) and number checks as a spec file. Literal items are not parsed."""
    data: dict = {}
    origins: dict = {}
    for item in sets:
        if "=" not in item:
            raise UserError(f"--set {item!r}: expected KEY=VALUE, e.g. --set train.lr=0.1")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            raise UserError(f"--set {item!r}: KEY must be a dotted key like train.lr")
        value = raw if isinstance(item, Literal) else _set_value(raw, item)
        parts = key.split(".")
        if parts[0] == "sweep" and len(parts) > 1:
            parts = ["sweep", ".".join(parts[1:])]
        elif parts[:2] == ["search", "space"] and len(parts) > 2:
            parts = ["search", "space", ".".join(parts[2:])]
        node = data
        for i, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(
                    f"--set {item!r}: {'.'.join(parts[: i + 1])} is set to a value elsewhere on the command line"
                )
            origins.setdefault(tuple(parts[: i + 1]), Origin(f"--set {item}"))
        if isinstance(value, dict) and isinstance(node.get(parts[-1]), dict):
            node[parts[-1]] = {**node[parts[-1]], **value}  # `--set a.b=1 --set a={c: 2}` keeps a.b
        else:
            node[parts[-1]] = value
        origins[tuple(parts)] = Origin(f"--set {item}")
    return data, origins


def _set_value(raw: str, item: str):
    if not raw.strip():
        return None
    try:
        value, _ = load_text(raw, f"--set {item}")
    except UserError as exc:
        if "invalid YAML" not in str(exc):
            raise  # too big, too deep, an alias bomb: refused as in a file
        return raw  # not YAML: take the text as it is
    return value


def _validate_site(data, origins) -> dict:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{where(origins, ('site',))}: must be a mapping of site settings")
    return validate_layer(data, origins, schema.SITE_SCHEMA, ("site",))


def tasks_per_node(resources: dict) -> int:
    """DDP processes per node: explicit, else one per GPU, else one."""
    return resources["tasks_per_node"] or max(1, resources["gpus_per_node"])


def dump_trial_spec(data: dict) -> str:
    """A trial's resolved spec for its spec.yaml: JSON, which every YAML reader reads as the same
    data, at a twentieth of the cost of a YAML dumper (a 10,000-trial submit writes 10,000)."""
    return "# the trial's resolved spec, as JSON (which is YAML)\n" + json.dumps(data) + "\n"


def dump_yaml(data: dict) -> str:
    # libyaml's dumper where present: a 1,000-trial submit writes 1,000 of these
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump(data, Dumper=dumper, sort_keys=False, default_flow_style=False, allow_unicode=True)
