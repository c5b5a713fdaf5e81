"""MLproject and the docs parameter tables, generated from the job configs (bertcls.config.jobs).

`python -m bertcls.config.generate` rewrites them; `--check` only compares (tests/test_project.py runs it).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from bertcls.config.fields import Param
from bertcls.config.jobs import job_params

ROOT = Path(__file__).resolve().parents[3]

MLPROJECT_HEADER = """\
name: bertcls

# GENERATED from the config dataclasses by `python -m bertcls.config.generate`; edit src/bertcls/config/.
# `mlflow run . -e train -P lr=2e-5` (add --env-manager local to use the current environment).
# Optional text parameters default to "none" (unset); numeric 0 means "all" for the sample caps.
# Data files are `path` parameters: MLflow resolves a relative path from the directory you run
# `mlflow run` in and downloads remote URIs (s3://, https://, ...); their unset value is /dev/null.
conda_env: conda.yaml

entry_points:
"""
MLPROJECT_JOBS = ("train", "sweep", "pretrain", "evaluate", "register", "predict", "distill")


def mlproject_default(param: Param) -> str | None:
    """How MLproject spells the default (None: required, no default)."""
    if param.required:
        return None
    if param.default is None:
        return '"/dev/null"' if param.kind == "path" else "0" if param.unset_is_zero else '"none"'
    if param.kind == "bool":
        return '"true"' if param.default else '"false"'
    if param.kind in ("int", "float"):
        return repr(param.default)
    return f'"{param.default}"'


def mlproject_type(param: Param) -> str:
    if param.kind == "path":
        return "path"
    if param.kind in ("int", "float") and (param.default is not None or param.unset_is_zero):
        return "float"
    return "string"


def _wrapped(words: list[str], indent: str, width: int = 104) -> list[str]:
    lines, line = [], indent
    for word in words:
        if len(line) + len(word) + 1 > width and line.strip():
            lines.append(line.rstrip())
            line = indent
        line += word + " "
    return [*lines, line.rstrip()]


def mlproject_text() -> str:
    out = [MLPROJECT_HEADER.rstrip("\n")]
    for job in MLPROJECT_JOBS:
        params = [p for p in job_params(job) if p.mlproject]
        out += [f"  {job}:", "    parameters:"]
        for param in params:
            default = mlproject_default(param)
            spec = f"type: {mlproject_type(param)}" + (f", default: {default}" if default is not None else "")
            out.append(f"      {param.name}: {{{spec}}}")
        words = [f"python entrypoints/{job}.py"] + [f"{p.flag} {{{p.name}}}" for p in params]
        out += ["    command: >-", *_wrapped(words, "      "), ""]
    return "\n".join(out).rstrip("\n") + "\n"


def _docs_default(param: Param) -> str:
    if param.required:
        return "required"
    if param.default is None:
        return "as trained" if param.inherited else "0 (all)" if param.unset_is_zero else "unset"
    return f"`{str(param.default).lower() if param.kind == 'bool' else param.default}`"


def docs_table(job: str) -> str:
    """The markdown table of a job's parameters (as `-P name=value`; `bertcls` takes `--name value`)."""
    rows = ["| parameter | default | meaning |", "|---|---|---|"]
    for param in job_params(job):
        if not param.mlproject:
            continue
        meaning = param.help + (f" (one of {', '.join(f'`{c}`' for c in param.choices)})" if param.choices else "")
        meaning += f" {param.docs}" if param.docs else ""
        rows.append(f"| `{param.name}` | {_docs_default(param)} | {meaning.replace('|', '/')} |")
    return "\n".join(rows)


DOCS_TABLES = {
    "train": "docs/training.md",
    "sweep": "docs/sweeps.md",
    "pretrain": "docs/pretraining.md",
    "evaluate": "docs/registry.md",
    "register": "docs/registry.md",
    "predict": "docs/deploy.md",
    "distill": "docs/distillation.md",
}


def _marked(job: str) -> re.Pattern:
    return re.compile(rf"(<!-- params:{job} -->)(.*?)(<!-- /params:{job} -->)", re.S)


def generated_files() -> dict[Path, str]:
    """What MLproject and the docs files hold when they agree with the definitions."""
    files = {ROOT / "MLproject": mlproject_text()}
    for job, doc in DOCS_TABLES.items():
        path = ROOT / doc
        text = files.get(path, path.read_text(encoding="utf-8"))
        if not _marked(job).search(text):
            raise RuntimeError(f"{doc} lacks the markers <!-- params:{job} --> ... <!-- /params:{job} -->")
        files[path] = _marked(job).sub(lambda m, job=job: f"{m.group(1)}\n{docs_table(job)}\n{m.group(3)}", text)
    return files


def main(argv: list[str]) -> int:
    stale = [p for p, text in generated_files().items() if not p.is_file() or p.read_text(encoding="utf-8") != text]
    if "--check" in argv:
        for path in stale:
            print(
                f"{path.relative_to(ROOT)} disagrees with the parameter definitions: run "
                "python -m bertcls.config.generate"
            )
        return 1 if stale else 0
    for path in stale:
        path.write_text(generated_files()[path], encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
