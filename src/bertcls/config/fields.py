"""The option machinery: a config dataclass field that is also a job parameter, and how values become configs.

`option(...)` declares a field's help, choices and kind; `params_of(cls)` lists the parameters a config
declares; `build` and `flatten` go from flat values to configs and back. Values from the command line are
normalised here, once: every spelling of "unset" becomes None. A leaf: it imports nothing of bertcls.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

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
        help=help,
        choices=choices,
        path=path,
        docs=docs,
        mlproject=mlproject,
        reading=reading,
        unset_is_zero=unset_is_zero,
    )
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
