"""The front door: every command the docs name exists and does something, and `make train` works as written.

Read from README.md, CONTRIBUTING.md and docs/*.md as a user reads them (fenced code blocks and inline code):
each `make <target>` has a recipe that `make -n` prints, each `bertcls <command>` exists with the flags the docs
give it, each `mlflow run <dir> -e <entry>` names an MLproject entry point and its parameters, and each entry
point's script answers --help. The slow test runs the README's first command in a fresh clone of the working
tree; the second, `make test`, is what CI runs (.ci/run), so the suite itself covers it.
"""

from __future__ import annotations

import os
import re
import runpy
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
PAGES = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    *[p for p in [ROOT / "CONTRIBUTING.md"] if p.exists()],
]
MLPROJECT = yaml.safe_load((ROOT / "MLproject").read_text())["entry_points"]
# What make prints about itself rather than a command it would run.
MAKE_CHATTER = re.compile(r"^make(\[\d+\])?: (Nothing to be done|Entering|Leaving|'.*' is up to date)")


def doc_commands() -> list[tuple[str, str]]:
    """(page, command line) for every line of a fenced code block and every inline code span of the docs."""
    found = []
    for page in PAGES:
        text = page.read_text()
        for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
            found += [(page.name, line.strip()) for line in block.splitlines() if line.strip()]
        prose = re.sub(r"```.*?```", "", text, flags=re.S)
        found += [(page.name, span.strip()) for span in re.findall(r"`([^`\n]+)`", prose)]
    return found


def _words(command: str) -> list[str]:
    """The command's words, its trailing comment dropped; placeholders like <id> stay words."""
    try:
        return shlex.split(command, comments=True)
    except ValueError:  # an unbalanced quote in a fragment: split plainly
        return command.split("#")[0].split()


def make_targets() -> dict[str, str]:
    """target -> the first doc line naming it, for every `make <target>` (VAR=value words allowed around it)."""
    targets = {}
    for page, command in doc_commands():
        words = _words(command)
        while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
            words = words[1:]
        if len(words) < 2 or words[0] != "make":
            continue
        goals = [w for w in words[1:] if re.fullmatch(r"[a-z][a-z0-9_-]*", w)]  # not VAR=x, -n, ... or <x>
        for goal in goals[:1] or ["setup"]:  # a bare `make` builds the first target
            targets.setdefault(goal, f"{page}: {command}")
    return targets


def bertcls_commands() -> list[tuple[str, str, list[str]]]:
    """(doc line, subcommand, flags) for every `bertcls <command> ...`; `a|b|c` names several commands."""
    found = []
    for page, command in doc_commands():
        words = _words(command)
        if len(words) < 2 or words[0] != "bertcls" or not re.fullmatch(r"[a-z][a-z|-]*", words[1]):
            continue
        flags = [w.split("=")[0] for w in words[2:] if w.startswith("--")]
        found += [(f"{page}: {command}", name, flags) for name in words[1].split("|")]
    return found


def mlflow_entries() -> list[tuple[str, str, list[str]]]:
    """(doc line, entry point, -P parameter names) for every `mlflow run <dir> -e <entry> ...`."""
    found = []
    for page, command in doc_commands():
        words = _words(command)
        if words[:2] != ["mlflow", "run"] or "-e" not in words:
            continue
        entry = words[words.index("-e") + 1]
        names = [words[i + 1].split("=")[0] for i, w in enumerate(words[:-1]) if w == "-P"]
        found.append((f"{page}: {command}", entry, names))
    return found


def _stamp(venv: Path) -> Path:
    """The set-up stamp the Makefile would look for in `venv`."""
    done = subprocess.run(
        ["make", "-s", f"VENV={venv}", "--eval", "print-stamp: ; @echo $(STAMP)", "print-stamp"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(done.stdout.strip())


def _dry_run(target: str, venv: Path) -> list[str]:
    done = subprocess.run(
        ["make", "-n", "--no-print-directory", f"VENV={venv}", f"PEER_VENV={venv}-peer", target],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return [line for line in (done.stdout + done.stderr).splitlines() if line.strip() and not MAKE_CHATTER.match(line)]


def test_the_docs_name_the_make_targets_a_newcomer_needs():
    assert {"train", "test", "ui", "setup"} <= set(make_targets())


@pytest.mark.parametrize("target", sorted(make_targets()))
def test_every_make_target_the_docs_name_prints_a_real_command(target, tmp_path):
    """`make -n <target>` with the set-up stamp present (a set-up checkout) prints at least one command. The
    benchmark venv is a fresh path, so a checkout that already built its own still tests the recipe."""
    venv = tmp_path / "venv"
    venv.mkdir()
    _stamp(venv).touch()
    printed = _dry_run(target, venv)
    where = make_targets()[target]
    assert printed, f"`make {target}` ({where}) does nothing: `make -n {target}` prints no command"
    assert not [line for line in printed if "No rule to make target" in line or "***" in line], (where, printed)


def test_set_up_runs_when_its_files_change_and_not_when_they_do_not(tmp_path):
    """The stamp is named by a checksum of what set-up installs: the same files reuse a venv, others set it up."""
    venv = tmp_path / "venv"
    venv.mkdir()
    assert any("pip install" in line for line in _dry_run("train", venv))
    _stamp(venv).touch()
    assert not any("pip install" in line for line in _dry_run("train", venv))
    assert "mlflow run . -e train --env-manager local --experiment-name bertcls" in "\n".join(_dry_run("train", venv))


@pytest.mark.parametrize(("where", "name", "flags"), bertcls_commands(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_bertcls_command_the_docs_name_exists_with_its_flags(where, name, flags):
    from bertcls.cli import main

    assert name in main.commands, f"{where}: `bertcls {name}` is not a command ({sorted(main.commands)})"
    command = main.commands[name]
    result = CliRunner().invoke(main, [name, "--help"])
    assert result.exit_code == 0, (where, result.output)
    known = {flag for param in command.params for flag in [*param.opts, *param.secondary_opts]}
    assert not [f for f in flags if f not in known], f"{where}: unknown flags {[f for f in flags if f not in known]}"


def test_the_docs_name_every_command():
    named = {name for _, name, _ in bertcls_commands()}
    from bertcls.cli import main

    commands = set(main.commands)
    assert named == commands, f"undocumented: {commands - named}, unknown: {named - commands}"


@pytest.mark.parametrize(("where", "entry", "names"), mlflow_entries(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_mlflow_run_entry_the_docs_name_exists_with_its_parameters(where, entry, names):
    assert entry in MLPROJECT, f"{where}: MLproject has no entry point {entry!r} ({sorted(MLPROJECT)})"
    unknown = [n for n in names if n not in MLPROJECT[entry]["parameters"]]
    assert not unknown, f"{where}: `{entry}` has no parameters {unknown}"


@pytest.mark.parametrize("entry", sorted(MLPROJECT))
def test_every_entry_point_script_answers_help(entry):
    """MLproject's command runs `python entrypoints/<x>.py`: the script exists and its click command has --help."""
    script = re.match(r"python (entrypoints/\w+\.py) ", MLPROJECT[entry]["command"]).group(1)
    namespace = runpy.run_path(str(ROOT / script), run_name="entrypoint")  # imports it; __main__ does not run
    commands = [v for v in namespace.values() if isinstance(v, click.Command)]
    assert len(commands) == 1, f"{script} should run one click command"
    result = CliRunner().invoke(commands[0], ["--help"])
    assert result.exit_code == 0 and "Usage:" in result.output, result.output


def working_tree_copy(target: Path) -> Path:
    """A fresh clone of the working tree: the tracked and untracked, not ignored files as they are now."""
    listed = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, listed):
        if (ROOT / name).is_file():  # a tracked file deleted in the working tree is not part of it
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)
    return target


@pytest.mark.slow
def test_make_train_as_the_readme_writes_it_logs_a_finished_run_of_the_default_model(tmp_path):
    """README's first command in a fresh clone, on a tiny slice of the real default model and data.

    Only two things differ from a newcomer's first run: `VENV=` names this suite's venv (set up by `make setup`
    from the same files, so nothing is reinstalled; documented in the Makefile) and `ARGS` adds the slice. It
    checks what the README promises: a FINISHED run with a logged model in the clone's own ./mlflow.db, which
    then loads and predicts in a fresh process. `make test`, the README's second command, is what CI runs.
    """
    venv = Path(sys.prefix)
    assert _stamp(venv).exists(), f"{venv} was not set up by `make setup` (no {_stamp(venv).name}): run it first"
    clone = working_tree_copy(tmp_path / "clone")
    tiny = "-P max_train_samples=64 -P max_eval_samples=32 -P epochs=1 -P max_buckets=2"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "XLA_", "VIRTUAL_ENV"))}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if not p.startswith(str(venv)))
    done = subprocess.run(
        ["make", "train", f"VENV={venv}", f"ARGS={tiny}"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "pip install" not in done.stdout, "set-up ran again although the venv was set up from the same files"

    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{clone / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("bertcls").experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert run.data.params["n_train"] == "64" and "test_accuracy" in run.data.metrics
    (model,) = client.search_logged_models([run.info.experiment_id], filter_string="name = 'model'")
    assert model.source_run_id == run.info.run_id and (clone / "mlruns").is_dir()
    code = (
        "import mlflow, pandas as pd; m = mlflow.pyfunc.load_model(f'runs:/{__import__(\"sys\").argv[1]}/model'); "
        "out = m.predict(pd.DataFrame({'text': ['free entry!!', 'see you soon']})); "
        "assert list(out.columns) == ['label', 'prob_ham', 'prob_spam'] and len(out) == 2, out; "
        "assert set(out['label']) <= {'ham', 'spam'}; print('ok')"
    )
    loaded = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code, run.info.run_id],
        cwd=clone,
        env={**env, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert loaded.returncode == 0 and loaded.stdout.strip().endswith("ok"), loaded.stderr[-3000:]
