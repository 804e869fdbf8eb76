"""`dlhpc schema`: the spec as a JSON Schema (draft 2020-12), generated from the same schema
the validator uses, so editors with YAML language support complete and check specs:

    dlhpc schema > dlhpc-spec.schema.json
    # then, first line of a spec:  # yaml-language-server: $schema=./dlhpc-spec.schema.json
"""

from dlhpc.spec import schema as s


def _anchored(pattern: str) -> str:
    return f"^(?:{pattern})$"  # the validator full-matches; JSON Schema patterns search


def field_schema(field) -> dict:
    if isinstance(field, s.Optional):
        inner = field_schema(field.inner)
        return {"anyOf": [{"type": "null"}, inner]}
    if isinstance(field, s.AutoBool):
        return {"anyOf": [{"type": "boolean"}, {"const": "auto"}]}
    if isinstance(field, s.Bool):
        return {"type": "boolean"}
    if isinstance(field, s.Int):
        out = {"type": "integer"}
        out.update({k: v for k, v in (("minimum", field.lo), ("maximum", field.hi)) if v is not None})
        return out
    if isinstance(field, s.Float):
        out = {"type": "number"}
        if field.lo is not None:
            out["exclusiveMinimum" if field.lo_open else "minimum"] = field.lo
        if field.hi is not None:
            out["maximum"] = field.hi
        return out
    if isinstance(field, s.Choice):
        return {"enum": list(field.choices)}
    if isinstance(field, s.Partitions):
        return {"anyOf": [field_schema(s.PARTITION), field_schema(field.names)]}
    if isinstance(field, s.Str):
        return {"type": ["string", "number"], "pattern": _anchored(field.pattern.pattern)}
    if isinstance(field, s.Time):
        return {
            "anyOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": _anchored(s.Time._re.pattern)}]
        }
    if isinstance(field, s.Mem):
        return {"type": ["string", "integer"], "pattern": r"^\s*\d+\s*[KMGTkmgt]?[Bb]?\s*$"}
    if isinstance(field, s.List):
        return {
            "type": "array",
            "items": field_schema(field.item),
            "minItems": field.min_len,
            "maxItems": field.max_len,
        }
    if isinstance(field, s.ParamValue):
        return {"type": ["number", "string", "boolean", "null", "array", "object"]}
    if isinstance(field, s.Map):
        return {
            "type": "object",
            "propertyNames": {"pattern": _anchored(field.key_pattern.pattern)},
            "additionalProperties": field_schema(field.value),
        }
    raise TypeError(f"no JSON Schema for {type(field).__name__}")


def _section(tree: dict, docs: dict, defaults: dict, prefix=()) -> dict:
    props = {}
    for key, field in tree.items():
        path = prefix + (key,)
        dotted = ".".join(path)
        if isinstance(field, dict):
            props[key] = {
                **_section(field, docs, (defaults or {}).get(key) or {}, path),
                "description": docs.get(dotted, ""),
            }
            continue
        if field is None:  # sweep: dotted keys to lists of values; search.space: to distributions
            values = {"type": "array", "minItems": 1} if dotted == "sweep" else DISTRIBUTION
            props[key] = {"type": ["object", "null"], "additionalProperties": values, "description": docs[dotted]}
            continue
        item = field_schema(field)
        item["description"] = f"{docs[dotted]} Allowed: {field.allowed}."
        if isinstance(defaults, dict) and key in defaults:
            item["default"] = defaults[key]
        props[key] = item
    return {"type": ["object", "null"], "properties": props, "additionalProperties": False}


def spec_json_schema() -> dict:
    root = _section(s.SCHEMA, s.DOCS, s.DEFAULTS)
    root["type"] = "object"
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "dlhpc-spec.schema.json",
        "title": "dlhpc experiment spec",
        "description": "See docs/spec.md.",
        **root,
    }


# one searched key's distribution (spec/search.py checks the values against the key)
_BOUNDS = {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2}
DISTRIBUTION = {
    "oneOf": [
        {"type": "object", "properties": {"uniform": _BOUNDS, "step": {"type": "number"}},
         "required": ["uniform"], "additionalProperties": False},
        {"type": "object", "properties": {"loguniform": _BOUNDS}, "required": ["loguniform"],
         "additionalProperties": False},
        {"type": "object", "properties": {"int": {**_BOUNDS, "items": {"type": "integer"}},
         "step": {"type": "integer", "minimum": 1}, "log": {"type": "boolean"}},
         "required": ["int"], "additionalProperties": False},
        {"type": "object", "properties": {"choice": {"type": "array", "minItems": 2}}, "required": ["choice"],
         "additionalProperties": False},
    ]
}  # fmt: skip
