"""Every error class lives in bertcls/errors.py and names one kind of problem; none is defined elsewhere."""

from __future__ import annotations

import ast
from pathlib import Path

import bertcls.errors as errors

SRC = Path(__file__).resolve().parent.parent / "src" / "bertcls"


def test_every_exception_class_is_defined_in_errors_py():
    elsewhere = []
    for path in sorted(SRC.rglob("*.py")):
        if path.name == "errors.py" and path.parent == SRC:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and any(
                getattr(base, "id", getattr(base, "attr", "")).endswith(("Error", "Exception", "Unreachable"))
                for base in node.bases
            ):
                elsewhere.append(f"{path.relative_to(SRC)}: {node.name}")
    assert elsewhere == []


def test_each_error_class_says_what_kind_of_problem_it_is_and_exits_non_zero():
    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.BertclsError)]
    assert len(classes) >= 10
    for cls in classes:
        assert cls.__doc__ and len(cls.__doc__.split()) >= 6, cls
        assert cls.exit_code != 0
