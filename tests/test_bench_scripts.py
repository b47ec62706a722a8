"""bench/README.md promises that every benchmark script takes --quick (a smoke run)."""

from __future__ import annotations

import ast
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def test_every_bench_command_takes_quick():
    scripts, missing = [], []
    for path in sorted(BENCH.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)]
        if not any(getattr(c.func, "attr", None) == "ArgumentParser" for c in calls):
            continue
        scripts.append(path.name)
        flags = {
            a.value
            for c in calls
            if getattr(c.func, "attr", None) == "add_argument"
            for a in c.args
            if isinstance(a, ast.Constant)
        }
        if "--quick" not in flags:
            missing.append(path.name)
    assert "interleaved.py" in scripts and not missing, missing
