#!/usr/bin/env python3
"""Checks the module dependency rule of style.md §B3: a module under lib/saes/ may include only
modules above it in the table below (and itself). Reads the #include lines; exits 1 listing every
violation. Usage: check_layering.py lib/saes"""
import pathlib
import re
import sys

ORDER = ["core", "io", "distributed", "lm", "data", "dictionaries", "training", "circuits",
         "analysis", "convert", "config", "runners"]
INCLUDE = re.compile(r'^\s*#\s*include\s+"saes/([a-z_]+)/([^"]+)"', re.M)


def main(root: pathlib.Path) -> int:
    problems = []
    for path in sorted(root.glob("*/*")):
        if path.suffix not in (".h", ".cpp"):
            continue
        module = path.parent.name
        if module not in ORDER:
            problems.append(f"{path}: module '{module}' is not in the layering table")
            continue
        rank = ORDER.index(module)
        for match in INCLUDE.finditer(path.read_text(encoding="utf-8")):
            target, header = match.group(1), match.group(2)
            if target not in ORDER:
                problems.append(f"{path}: includes unknown module saes/{target}/{header}")
            elif ORDER.index(target) > rank:
                problems.append(f"{path}: {module} may not include saes/{target}/{header} "
                                f"({target} comes after {module} in style.md §B3)")
    for line in problems:
        print(line)
    if problems:
        return 1
    print(f"layering: ok ({len(ORDER)} modules)")
    return 0


if __name__ == "__main__":
    sys.exit(main(pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "lib/saes")))
