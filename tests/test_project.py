"""Project files stay consistent: conda.yaml's pip list equals pyproject's dependencies; CI runs make test."""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_conda_yaml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    conda = yaml.safe_load((ROOT / "conda.yaml").read_text())
    pip_section = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    assert "-e ." in pip_section, "conda.yaml must install the project itself"
    assert sorted(r for r in pip_section if r != "-e .") == sorted(project["dependencies"])
    python = next(d for d in conda["dependencies"] if isinstance(d, str) and d.startswith("python="))
    assert python == "python=3.11"


def test_ci_runs_the_readme_test_command():
    run = (ROOT / ".ci" / "run").read_text().splitlines()
    commands = [line for line in run if line.strip() and not line.startswith(("#", "set ", "cd "))]
    assert commands == ["make test"]
    assert "make test" in (ROOT / "README.md").read_text()


def test_constraints_pin_every_dependency():
    pins = {
        line.split("==")[0].lower().replace("_", "-")
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line
    }
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = [r.split(">")[0].split("<")[0].split("=")[0].lower() for r in project["dependencies"]]
    assert not [n for n in names if n not in pins]


def test_mlproject_train_passes_every_parameter_to_the_cli_with_its_default():
    """Each MLproject train parameter reaches a `bertcls train` option of the same name and default."""
    from bertcls.cli import train

    entry = yaml.safe_load((ROOT / "MLproject").read_text())["entry_points"]["train"]
    options = {p.name: p for p in train.params}
    for name, spec in entry["parameters"].items():
        assert f"--{name.replace('_', '-')} {{{name}}}" in entry["command"], name
        default = options[name].default
        if default is None:
            assert spec["default"] in ("none", 0, "/dev/null"), name  # unset spelled as MLproject can (path: /dev/null)
        else:
            assert type(default)(spec["default"]) == default, name
    assert set(options) - set(entry["parameters"]) <= {"experiment", "run_name"}  # mlflow run chooses these
