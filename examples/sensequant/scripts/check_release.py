#!/usr/bin/env python3
"""The promotion checklist's test step (and the post-deploy check, with --root TARGET): the
released configs must parse and hold sane values.

Reads only; writes nothing (no bytecode), so it can run inside a release workspace.
"""

import argparse
import ast
import os
import sys

parser = argparse.ArgumentParser(description="Check the released configs.")
parser.add_argument("--root", default=".", help="where the configs are (default: the workspace; a deploy target after deploy)")
root = parser.parse_args().root

errors = []
with open(os.path.join(root, "src/app/config.py"), encoding="utf-8") as source:
    tree = ast.parse(source.read(), "src/app/config.py")
settings = {}
for node in ast.walk(tree):
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
        try:
            settings[node.target.id] = ast.literal_eval(node.value)
        except ValueError:
            pass
for key in ("intraday_confidence_threshold", "swing_confidence_threshold"):
    value = settings.get(key)
    if not isinstance(value, float) or not 0.5 <= value < 1.0:
        errors.append(f"src/app/config.py: {key} = {value!r}, expected a number in [0.5, 1)")
for key in ("intraday_max_position", "swing_max_position"):
    value = settings.get(key)
    if not isinstance(value, float) or not 0.0 < value <= 0.1:
        errors.append(f"src/app/config.py: {key} = {value!r}, expected a fraction in (0, 0.1]")
with open(os.path.join(root, "search_space.yaml"), encoding="utf-8") as space:
    if "student_model:" not in space.read():
        errors.append("search_space.yaml: no student_model section")
for error in errors:
    print(error, file=sys.stderr)
print(f"checked {len(settings)} settings: {'ok' if not errors else f'{len(errors)} problems'}")
sys.exit(1 if errors else 0)
