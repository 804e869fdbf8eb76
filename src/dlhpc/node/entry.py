"""`python -m dlhpc.node.entry module:function [ARGS...]`: call a program's entry function on
this rank with the trial's parameters (a dict from $DLHPC_PARAMS); ARGS are in sys.argv[1:]."""

import importlib
import json
import os
import sys


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    target, args = argv[0], argv[1:]
    module_name, function_name = target.split(":", 1)
    function = getattr(importlib.import_module(module_name), function_name)
    sys.argv = [target, *args]
    function(json.loads(os.environ.get("DLHPC_PARAMS") or "{}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
