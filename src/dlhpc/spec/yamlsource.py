"""YAML with line numbers: every key path remembers the file and line it came from.

The validator uses that to say `spec.yaml:12: train.epochs: ...` instead of a bare message.
Aliases are expanded by hand with a budget, so a YAML alias bomb is refused in milliseconds.
"""

from dataclasses import dataclass
from pathlib import Path

import yaml

from dlhpc.errors import UserError

MAX_NODES = 50_000  # far above any honest spec; stops "billion laughs" expansions early
MAX_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 100  # nesting deeper than any spec; deeper input would exhaust Python's stack


class RetypedInt(int):
    """An int YAML 1.1 read from text that does not say it: `0123` (octal 83), `0x1f`, `1_000`,
    `12:30` (sexagesimal). Behaves as the int; `raw` keeps the text, so a field that names
    something (an account, a path) can refuse it instead of sending another value to the scheduler."""

    raw: str

    def __new__(cls, value, raw):
        obj = super().__new__(cls, value)
        obj.raw = raw
        return obj

    def __getnewargs__(self):  # copy and pickle keep the text
        return int(self), self.raw


class RetypedFloat(float):
    """A float YAML read from text that prints differently (`1e3` is 1000.0, `.5` is 0.5)."""

    raw: str

    def __new__(cls, value, raw):
        obj = super().__new__(cls, value)
        obj.raw = raw
        return obj

    def __getnewargs__(self):
        return float(self), self.raw


for _dumper in {yaml.SafeDumper, getattr(yaml, "CSafeDumper", yaml.SafeDumper)}:
    _dumper.add_representer(RetypedInt, yaml.representer.SafeRepresenter.represent_int)
    _dumper.add_representer(RetypedFloat, yaml.representer.SafeRepresenter.represent_float)


def retyped_text(value) -> str | None:
    """The text YAML turned into `value`, when it would print as something else; else None."""
    return getattr(value, "raw", None)


@dataclass(frozen=True)
class Origin:
    file: str
    line: int | None = None

    def __str__(self):
        return f"{self.file}:{self.line}" if self.line else self.file


class _Budget:
    def __init__(self, where: str):
        self.left, self.where = MAX_NODES, where

    def spend(self):
        self.left -= 1
        if self.left < 0:
            raise UserError(
                f"{self.where}: the YAML expands to more than {MAX_NODES} values "
                "(nested aliases?); write the spec out plainly"
            )


def load_text(text: str, source: str):
    """Parse YAML text; return (data, origins) where origins maps key-path tuples to Origin."""
    if len(text) > MAX_BYTES:
        raise UserError(f"{source}: file is larger than {MAX_BYTES // 1024} KiB; is this really a spec?")
    try:
        loader = yaml.SafeLoader(text)  # the reader refuses control characters here already
    except yaml.YAMLError as exc:
        raise UserError(f"{source}: invalid YAML: {exc}") from None
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise UserError(f"{where}: invalid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{source}: invalid YAML: {exc}") from None
    except RecursionError:
        raise UserError(f"{source}: nested too deeply to be a spec; write it out plainly") from None
    finally:
        loader.dispose()
    origins: dict[tuple, Origin] = {}
    if node is None:  # no document at all: empty, or only comments
        return None, origins
    data = _convert(loader, node, (), origins, source, _Budget(source))
    return data, origins


def load_file(path) -> tuple:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, expected a YAML spec file") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text; a spec must be a YAML text file") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    return load_text(text, str(path))


def _convert(loader, node, path, origins, source, budget):
    budget.spend()
    if len(path) > MAX_DEPTH:
        raise UserError(
            f"{source}:{node.start_mark.line + 1}: nested more than {MAX_DEPTH} levels deep; is this a spec?"
        )
    origins.setdefault(path, Origin(source, node.start_mark.line + 1))
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves `<<:` merge keys
        out = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise UserError(f"{source}:{key_node.start_mark.line + 1}: keys must be plain names")
            key = loader.construct_object(key_node)
            key = key if isinstance(key, str) else str(key)
            if key in out:
                raise UserError(
                    f"{source}:{key_node.start_mark.line + 1}: {'.'.join(path + (key,))}: key appears twice; keep one"
                )
            origins[path + (key,)] = Origin(source, key_node.start_mark.line + 1)
            out[key] = _convert(loader, value_node, path + (key,), origins, source, budget)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(loader, item, path + (i,), origins, source, budget) for i, item in enumerate(node.value)]
    try:
        value = loader.construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError, OverflowError) as exc:
        raise UserError(f"{source}:{node.start_mark.line + 1}: invalid value: {exc}") from None
    return _keep_text(value, node)


def _keep_text(value, node):
    if node.style or isinstance(value, (bool, str)) or value is None:
        return value  # quoted, or not a number: nothing was reinterpreted as a number
    if isinstance(value, int) and str(value) != node.value:
        return RetypedInt(value, node.value)
    if isinstance(value, float) and repr(value) != node.value:
        return RetypedFloat(value, node.value)
    return value


def where(origins, path) -> str:
    """'file:line: key.path' for messages; walks up to the nearest recorded parent."""
    probe = tuple(path)
    while probe and probe not in origins:
        probe = probe[:-1]
    origin = origins.get(probe)
    dotted = ".".join(str(p) for p in path)
    return f"{origin}: {dotted}" if origin else dotted
