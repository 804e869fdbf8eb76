"""What a trial runs: the user's program (a script, a module or a function) or dlhpc's built-in
trainer, and its command line per trial (docs/own-code.md).

Checked at load, like every other key: exactly one of script/module/entry, the built-in trainer's
sections not mixed in, every `{params.NAME}` in args a parameter the trial has.
"""

import json
import re
from pathlib import Path

from dlhpc.errors import UserError
from dlhpc.spec import schema
from dlhpc.spec.yamlsource import where

KINDS = ("script", "module", "entry")
BUILTIN = "builtin"
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


def kind(data: dict) -> str:
    """script, module, entry, or builtin (dlhpc's own trainer: no program named)."""
    program = data.get("program") or {}
    return next((k for k in KINDS if program.get(k)), BUILTIN)


def is_builtin(data: dict) -> bool:
    return kind(data) == BUILTIN


def named(data: dict) -> str | None:
    """What the spec's program names (its script, module or entry); None for the built-in trainer."""
    k = kind(data)
    return None if k == BUILTIN else data["program"][k]


def format_args(args: list, params: dict) -> list[str]:
    """program.args with each {params.NAME} replaced by the trial's value: text as it is, other
    values as JSON (true, 0.1, [1, 2]); {{ and }} are literal braces."""
    return [_format_arg(arg, params) for arg in args]


def _format_arg(arg: str, params: dict) -> str:
    def replace(m):
        token = m.group(0)
        if token in ("{{", "}}"):
            return token[0]
        name = (m.group(1) or "").strip()
        if not name.startswith("params.") or name[len("params.") :] not in params:
            raise KeyError(name or token)
        value = params[name[len("params.") :]]
        return value if isinstance(value, str) else json.dumps(value)

    return _PLACEHOLDER.sub(replace, arg)


def check(spec) -> None:
    """Cross-field checks of `program` and `params` (file:line errors)."""
    data, origins = spec.data, spec.origins
    program = data["program"]
    named = [k for k in KINDS if program.get(k)]
    if len(named) > 1:
        raise UserError(
            f"{where(origins, ('program', named[1]))}: program names both {named[0]} and {named[1]}; "
            "keep one: script (python FILE), module (python -m MODULE) or entry (module:function)"
        )
    set_keys = [k for k in program if k not in KINDS and program[k] != schema.SCHEMA_PROGRAM[k].default]
    if not named:
        if set_keys:
            raise UserError(
                f"{where(origins, ('program', set_keys[0]))}: is set but no program is "
                "named; add program.script (or module, or entry), or remove it to use the built-in trainer"
            )
        return
    _refuse_builtin_sections(spec, named[0])
    params = data.get("params") or {}
    swept = {k.split(".", 1)[1] for k in spec.sweep if k.startswith("params.")}
    known = {**params, **dict.fromkeys(swept, "")}
    for i, arg in enumerate(program["args"]):
        try:
            _format_arg(arg, known)
        except KeyError as exc:
            name = exc.args[0]
            have = ", ".join(f"{{params.{p}}}" for p in known) or "none: add them under params"
            raise UserError(
                f"{where(origins, ('program', 'args', i))}: {name!r} is not a parameter "
                f"of the trials ({have}); write {{params.NAME}} for a value, {{{{ and }}}} for a literal brace"
            ) from None


def _refuse_builtin_sections(spec, named: str) -> None:
    """model/train/data configure the built-in trainer; silently ignoring them next to a program
    would hide a mistake (a user's train.lr that reaches nothing)."""
    site = spec.site_file
    for path, origin in spec.origins.items():
        if not path or path[0] not in schema.BUILTIN_SECTIONS or origin is None:
            continue
        if site and str(origin).startswith(site):
            continue  # a site's defaults for the built-in trainer do not concern programs
        raise UserError(
            f"{origin}: {'.'.join(map(str, path))} configures dlhpc's built-in trainer, but this spec runs its "
            f"own program (program.{named}); give your program its settings under params (e.g. params.lr), "
            "and reach them as {params.lr} in program.args or dlhpc.trial.params"
        )
    for key in spec.sweep:
        if key.split(".")[0] in schema.BUILTIN_SECTIONS:
            raise UserError(
                f"{where(spec.origins, ('sweep', key))}: cannot sweep {key}: this spec runs its own program "
                f"(program.{named}); sweep params.NAME instead"
            )


def spec_folder(source: str) -> Path:
    """The folder relative paths in the spec are relative to (the working directory for a spec
    given as text)."""
    path = Path(source)
    return path.resolve().parent if source and not source.startswith("<") and path.exists() else Path.cwd()


def script_path(data: dict, source: str) -> Path | None:
    script = (data.get("program") or {}).get("script")
    if not script:
        return None
    path = Path(script).expanduser()
    return path if path.is_absolute() else spec_folder(source) / path


def code_folder(data: dict, source: str) -> Path | None:
    """The folder snapshotted at submit: program.code, else the script's folder, else the spec's."""
    if is_builtin(data):
        return None
    code = data["program"].get("code")
    if code:
        path = Path(code).expanduser()
        return (path if path.is_absolute() else spec_folder(source) / path).resolve()
    script = script_path(data, source)
    return script.resolve().parent if script else spec_folder(source)
