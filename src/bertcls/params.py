"""Every job parameter defined once, as config dataclass fields with metadata.

`option(...)` declares a field's help, choices and kind; `job_params(job)` lists a job's parameters from
the dataclasses; the click options (cli.py), the MLproject file, the docs tables and `flat_params()` all
come from that list. `python -m bertcls.params` rewrites MLproject and the docs tables; `--check` only
compares (a test runs it). Values from the command line are normalised here, once: every spelling of
"unset" becomes None.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
# How an unset optional value arrives: MLproject defaults are "none" (/dev/null for `path` parameters,
# which MLflow requires to exist), and `mlflow run` records an empty -P value as the shell-quoted "''".
UNSET_SPELLINGS = ("", "''", '""', "none", "None", "null", "/dev/null")
TRUE_SPELLINGS, FALSE_SPELLINGS = ("true", "True", "1", "yes"), ("false", "False", "0", "no")


def option(
    default: Any = dataclasses.MISSING,
    help: str = "",  # noqa: A002 - the click word
    *,
    choices: tuple[str, ...] | None = None,
    path: bool = False,
    docs: str = "",
    mlproject: bool = True,
    reading: bool = False,
    unset_is_zero: bool = False,
) -> Any:
    """A dataclass field that is also a job parameter.

    path: a local file (MLproject `path` type: resolved from the caller's directory); docs: extra text for
    the docs table only; mlproject: False for what `mlflow run` decides itself (experiment, run name);
    reading: how text becomes model rows, fixed by a trained model; unset_is_zero: 0 also means unset
    (the sample caps, since MLproject has no integer "none").
    """
    metadata = dict(
        help=help, choices=choices, path=path, docs=docs, mlproject=mlproject, reading=reading,
        unset_is_zero=unset_is_zero,
    )  # fmt: skip
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class Param:
    """One parameter of a job: its name, kind, default (None = unset), choices and help."""

    name: str
    kind: str  # "int", "float", "str", "bool", "path"
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    optional: bool = False  # None is a valid value (unset)
    required: bool = False
    docs: str = ""
    mlproject: bool = True
    reading: bool = False
    unset_is_zero: bool = False
    group: str = ""  # the nested config it belongs to ("data", "optim") or "" for the top level
    inherited: bool = False  # unset means "as the source run had it"

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def parse(self, raw: Any) -> Any:
        """A raw value (str from the command line or MLflow, or a Python value) as the field's type."""
        if raw is None or (isinstance(raw, str) and raw.strip() in UNSET_SPELLINGS):
            if self.required:
                raise ValueError(f"{self.name} needs a value")
            return None if self.optional else self.default  # unset: the default
        if self.kind == "bool":
            if isinstance(raw, bool):
                return raw
            if str(raw) in TRUE_SPELLINGS + FALSE_SPELLINGS:
                return str(raw) in TRUE_SPELLINGS
            raise ValueError(f"{raw!r} is not true or false")
        if self.kind in ("int", "float"):
            try:
                number = float(raw)
            except (TypeError, ValueError):
                raise ValueError(f"{raw!r} is not a number") from None
            if self.kind == "int":
                if not number.is_integer():
                    raise ValueError(f"{raw!r} is not a whole number")
                number = int(number)
            return None if (self.unset_is_zero and number == 0) else number
        value = str(raw)
        if self.choices and value not in self.choices:
            raise ValueError(f"{value!r} is not one of {', '.join(self.choices)}")
        return value

    def as_inherited(self) -> Param:
        """The same parameter where unset means "as the source run had it" (evaluate's data options)."""
        return dataclasses.replace(self, default=None, optional=True, inherited=True)


def _kind_of(hint: Any) -> tuple[str, bool]:
    """(kind, optional) from a field's resolved type hint."""
    optional = False
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional, hint = len(args) < len(typing.get_args(hint)), args[0]
    names = {int: "int", float: "float", str: "str", bool: "bool"}
    return names[hint], optional


def params_of(cls: type, group: str = "") -> list[Param]:
    """The parameters a config dataclass declares with `option(...)`, nested configs flattened in order."""
    hints = typing.get_type_hints(cls)
    found: list[Param] = []
    for field in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[field.name]):
            found += params_of(hints[field.name], group=field.name)
            continue
        if "help" not in field.metadata:
            continue
        kind, optional = _kind_of(hints[field.name])
        meta = field.metadata
        required = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
        found.append(
            Param(
                name=field.name,
                kind="path" if meta["path"] else kind,
                default=None if required else field.default,
                help=meta["help"],
                choices=meta["choices"],
                optional=optional,
                required=required,
                docs=meta["docs"],
                mlproject=meta["mlproject"],
                reading=meta["reading"],
                unset_is_zero=meta["unset_is_zero"],
                group=group,
            )
        )
    return found


def job_params(job: str) -> list[Param]:
    """The parameters of `train`, `sweep`, `pretrain`, `evaluate`, `register` or `data-stats`, in the order shown."""
    from bertcls.config import (
        CORPUS_PARAMS,
        SWEPT,
        DataConfig,
        EvaluateConfig,
        PretrainConfig,
        RegisterConfig,
        RunOptions,
        SweepConfig,
        TrainConfig,
    )

    if job == "train":
        return params_of(TrainConfig) + params_of(RunOptions)
    if job == "sweep":  # the swept train parameters become lists; every other one passes through to the trials
        run = [p for p in params_of(RunOptions) if p.name in ("experiment", "run_name", "system_metrics")]
        return params_of(SweepConfig) + [p for p in params_of(TrainConfig) if p.name not in SWEPT] + run
    if job == "pretrain":  # the train job's model, the corpus's data options, its own MLM settings
        corpus = [p for p in params_of(DataConfig) if p.name in CORPUS_PARAMS]
        model = [p for p in params_of(TrainConfig) if p.name == "model"]
        run = [p for p in params_of(RunOptions) if p.name in ("experiment", "run_name", "system_metrics")]
        return model + corpus + [p for p in params_of(PretrainConfig) if not p.group] + run
    if job == "evaluate":
        inherited = [p.as_inherited() for p in params_of(DataConfig) if not p.reading]
        return params_of(EvaluateConfig) + inherited
    if job == "register":
        return params_of(RegisterConfig)
    if job == "data-stats":
        train = {p.name: p for p in params_of(TrainConfig)}
        return [train["model"], *params_of(DataConfig), train["batch_size"]]
    raise KeyError(job)


def build(cls: type, values: dict[str, Any]) -> Any:
    """An instance of config `cls` from flat, already parsed values (nested configs by their fields)."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for field in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[field.name]):
            kwargs[field.name] = build(hints[field.name], values)
        elif field.name in values:
            kwargs[field.name] = values[field.name]
    return cls(**kwargs)


def flatten(config: Any) -> dict[str, Any]:
    """A config's fields as one flat dict, nested configs inlined (the MLflow params of a run)."""
    flat: dict[str, Any] = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        flat.update(flatten(value) if dataclasses.is_dataclass(value) else {field.name: value})
    return flat


# ---- generated files: MLproject and the docs tables ------------------------------------------------------

MLPROJECT_HEADER = """\
name: bertcls

# GENERATED from the config dataclasses by `python -m bertcls.params`; edit src/bertcls/config.py.
# `mlflow run . -e train -P lr=2e-5` (add --env-manager local to use the current environment).
# Optional text parameters default to "none" (unset); numeric 0 means "all" for the sample caps.
# Data files are `path` parameters: MLflow resolves a relative path from the directory you run
# `mlflow run` in and downloads remote URIs (s3://, https://, ...); their unset value is /dev/null.
conda_env: conda.yaml

entry_points:
"""
MLPROJECT_JOBS = ("train", "sweep", "pretrain", "evaluate", "register")


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


DOCS_TABLES = {"train": "docs/training.md", "sweep": "docs/sweeps.md", "pretrain": "docs/pretraining.md",
               "evaluate": "docs/registry.md", "register": "docs/registry.md"}  # fmt: skip


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
            print(f"{path.relative_to(ROOT)} disagrees with the parameter definitions: run python -m bertcls.params")
        return 1 if stale else 0
    for path in stale:
        path.write_text(generated_files()[path], encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
