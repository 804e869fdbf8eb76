"""docs/spec.md from the schema: every key, its type, default and meaning.

python -m dlhpc.spec.docs > docs/spec.md
"""

import json

from dlhpc.spec import schema

HEADER = """# Spec reference

Generated from `src/dlhpc/spec/schema.py` by `python -m dlhpc.spec.docs`; a test fails when it is stale.

A spec is a YAML file; every key is optional. Layers, lowest first: built-in defaults < site
file (`$DLHPC_SITE`, else `/etc/dlhpc/site.yaml`) < user config (`~/.config/dlhpc/config.yaml`)
< `$DLHPC_RUNS_DIR` (runs_dir only) < the spec < `--set KEY=VALUE` / `--scheduler` / `--runs-dir`.
An unknown key, a wrong type or a value out of range is an error naming the file, line and key
(exit 2).
"""


MAPPINGS = {"sweep": "dotted keys to lists", "search.space": "dotted keys to distributions"}


def _default(value) -> str:
    return "`null`" if value is None else f"`{json.dumps(value)}`"


def _rows(tree, docs, defaults, prefix=(), with_default=True) -> list[str]:
    rows = []
    for key, field in tree.items():
        path = prefix + (key,)
        dotted = ".".join(path)
        if isinstance(field, dict):
            rows += _rows(field, docs, (defaults or {}).get(key, {}), path, with_default)
            continue
        allowed = field.allowed if field is not None else MAPPINGS[dotted]
        default = (defaults or {}).get(key) if isinstance(defaults, dict) else None
        cells = [f"`{dotted}`", allowed] + ([_default(default)] if with_default else []) + [docs[dotted]]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def render() -> str:
    table = ["| key | allowed | default | meaning |", "|---|---|---|---|"]
    # (a spec that searches has every search key, these defaults filled in: spec/search.py)
    table += _rows(schema.SCHEMA, schema.DOCS, {**schema.DEFAULTS, "search": schema.SEARCH_DEFAULTS})
    site = ["| key | allowed | meaning |", "|---|---|---|"]
    site += _rows(schema.SITE_SCHEMA, schema.SITE_DOCS, {}, with_default=False)
    return (
        HEADER + "\n## Spec keys\n\n" + "\n".join(table) + "\n\n## Site-only keys\n\n"
        "Under `site:` in the site file only (a user config or spec with them is refused).\n\n" + "\n".join(site) + "\n"
    )


if __name__ == "__main__":
    print(render(), end="")
