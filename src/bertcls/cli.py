"""The `bertcls` command line; MLproject's entry points call the same click commands."""

from __future__ import annotations

import functools
import os
import sys

import click

from bertcls.config.fields import Param, build
from bertcls.config.jobs import job_params
from bertcls.errors import BertclsError, ConfigError, TrackingUnreachable, setting


def configure_process() -> None:
    """Process-wide settings for a command-line job, set before any library reads them."""
    os.environ.setdefault("MPLBACKEND", "Agg")  # figures are files; no display
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # keeps logs readable under mlflow run
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


class ParsedBy(click.ParamType):
    """A click type that parses with the parameter's own definition (unset spellings become None)."""

    def __init__(self, param: Param):
        self.param = param
        self.name = param.kind

    def convert(self, value, param, ctx):
        try:
            return self.param.parse(value)
        except ValueError as err:
            self.fail(str(err), param, ctx)


def options(job: str):
    """Click options for every parameter of `job`, from its single definition (bertcls.config)."""

    def decorate(command):
        for param in reversed(job_params(job)):
            kind = click.Choice(param.choices) if param.choices and not param.optional else ParsedBy(param)
            command = click.option(
                param.flag,
                param.name,
                default=param.default,
                show_default=param.default is not None,
                required=param.required,
                type=kind,
                help=param.help,
            )(command)
        return command

    return decorate


def friendly_errors(command):
    """Configure the process, then show a BertclsError as one paragraph on stderr and exit 2, no traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        configure_process()
        try:
            return command(*args, **kwargs)
        except BertclsError as err:
            click.echo(f"error: {err}", err=True)
            if not isinstance(err, TrackingUnreachable):
                _end_launcher_run_refused(str(err), command.__name__.replace("_", "-"))
            sys.exit(err.exit_code)

    return wrapper


def _end_launcher_run_refused(message: str, job: str) -> None:
    """Under `mlflow run`, MLflow made a run (with every -P as a param) before our code ran: input refused before
    the job started ends it FAILED, tagged refused_input, its description the error, so the UI says why."""
    run_id = os.environ.get("MLFLOW_RUN_ID")
    if run_id:
        from bertcls.tracking import runs

        runs.end_refused_run(run_id, message, job)


def _stop_with_parent() -> None:
    """Linux: get SIGTERM when the parent (`mlflow run`) dies. A SIGTERM to `mlflow run` alone used to end just
    that process (exit 143) while training went on unseen, its run RUNNING; now training checkpoints and stops."""
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the signal has to reach the process group
        return
    if os.getppid() == 1:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def entry_point(command: click.Command) -> None:
    """Run `command` as an MLproject entry point: a bad -P value that click itself refuses also ends the run
    `mlflow run` made, FAILED and saying why (errors of our own do so in friendly_errors); training stops with
    its parent `mlflow run` (see _stop_with_parent)."""
    _stop_with_parent()
    try:
        code = command.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted!", err=True)
        sys.exit(1)
    except click.ClickException as err:
        err.show()
        _end_launcher_run_refused(err.format_message(), command.name or "train")
        sys.exit(err.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


@click.group()
def main() -> None:
    """Fine-tune BERT-family encoders for text classification, tracked in MLflow."""


@main.command("data-stats")
@options("data-stats")
@friendly_errors
def data_stats(model: str, batch_size: int, **data_values) -> None:
    """Split sizes, cleaning counts, labels and padding efficiency (buckets vs pad-to-max)."""
    from bertcls.config import DataConfig
    from bertcls.data.report import data_report
    from bertcls.model.tokenizer import load_tokenizer
    from bertcls.tracking.artifacts import resolve_model

    click.echo(data_report(build(DataConfig, data_values), load_tokenizer(resolve_model(model)), batch_size))


# Renamed train parameters: old name -> (new name, old value -> new value). Accepted (hidden) only to say so.
RENAMED = {"compute_dtype": ("precision", {"float32": "fp32", "bfloat16": "bf16"})}


def renamed_options(command):
    """Hidden options under each renamed parameter's old name (`mlflow run` passes an undeclared `-P
    compute_dtype=...` as `--compute_dtype`), so the error names the new parameter instead of 'no such option'."""
    for old in RENAMED:
        flags = (f"--{old.replace('_', '-')}", f"--{old}")
        command = click.option(*flags, old, default=None, hidden=True, expose_value=True)(command)
    return command


def _refuse_renamed(values: dict) -> None:
    for old, (new, value_map) in RENAMED.items():
        given = values.pop(old, None)
        if given is not None:
            suggestion = value_map.get(given, next(iter(value_map.values())))
            raise ConfigError(
                f"{old} was renamed {new}. Use {setting(new, suggestion)} instead of {old}={given} "
                f"({', '.join(f'{a} = {b}' for a, b in value_map.items())})."
            )


@main.command("export")
@click.argument("model_uri")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["hf", "onnx"]),
    default="hf",
    show_default=True,
    help="hf: a Hugging Face directory; onnx: ONNX files that ONNX Runtime runs without JAX (docs/export.md)",
)
@click.option(
    "--quantize",
    type=click.Choice(["none", "int8"]),
    default="none",
    show_default=True,
    help="with --format onnx: also an int8 graph (ONNX Runtime dynamic quantization), measured on the test split",
)
@click.option("--push-to-hub", "push_to_hub", default=None, help="upload the export to this hub repo (online)")
@friendly_errors
def export(model_uri: str, directory: str, fmt: str, quantize: str, push_to_hub: str | None) -> None:
    """Write MODEL_URI as a Hugging Face directory (AutoModelForSequenceClassification loads it) or as ONNX."""
    if fmt == "onnx":
        from bertcls.jobs import export_onnx

        if push_to_hub:
            raise click.UsageError("--push-to-hub applies to --format hf.")
        click.echo(
            export_onnx.describe(
                export_onnx.export_onnx(model_uri, directory, None if quantize == "none" else quantize)
            )
        )
        return
    if quantize != "none":
        raise click.UsageError("--quantize applies to --format onnx.")
    from bertcls.jobs import export as job

    outcome = job.export(model_uri, directory, push_to_hub)
    click.echo(
        f"exported {model_uri} to {outcome.directory}"
        + (f" (also logged to run {outcome.source_run_id} as hf_export/)" if outcome.source_run_id else "")
        + (f"; pushed: {outcome.hub_url}" if outcome.hub_url else "")
    )


@main.command("sweep")
@options("sweep")
@friendly_errors
def sweep(**values) -> None:
    """A grid or TPE search over train parameters: one parent run, a child run per trial (Optuna)."""
    import dataclasses

    from bertcls.config import RunOptions, SweepConfig, TrainConfig
    from bertcls.jobs import sweep as job

    sweep_names = {field.name for field in dataclasses.fields(SweepConfig)}
    sweep_config = build(SweepConfig, {k: v for k, v in values.items() if k in sweep_names})
    base = build(TrainConfig, {k: v for k, v in values.items() if k not in sweep_names})  # swept: train defaults
    run = build(RunOptions, values)
    try:
        outcome = job.sweep(base, sweep_config, run.experiment, run.run_name, system_metrics=run.system_metrics)
    except KeyboardInterrupt as interrupt:
        click.echo(
            f"interrupted ({interrupt or 'Ctrl-C'}): the sweep run and its running trial are marked KILLED; run the "
            "same command again to continue the study (finished trials are skipped).",
            err=True,
        )
        sys.exit(130)
    click.echo(job.describe_sweep(outcome))


@main.command("pretrain")
@options("pretrain")
@friendly_errors
def pretrain(**values) -> None:
    """Continue masked-LM pre-training of the encoder on a corpus; log it as the run's `encoder` artifact."""
    from bertcls.config import PretrainConfig, RunOptions
    from bertcls.jobs import pretrain as job

    config, run = build(PretrainConfig, values), build(RunOptions, values)
    try:
        outcome = job.pretrain(config, run.experiment, run.run_name, system_metrics=run.system_metrics)
    except KeyboardInterrupt as interrupt:
        click.echo(
            f"interrupted ({interrupt or 'Ctrl-C'}): the MLflow run is marked KILLED; no encoder was logged "
            "(pretrain has no resume: start it again).",
            err=True,
        )
        sys.exit(130)
    click.echo(job.describe_pretrain(outcome))


@main.command("train")
@options("train")
@renamed_options
@friendly_errors
def train(**values) -> None:
    """Fine-tune a model and log params, per-epoch metrics, figures and the best model to MLflow."""
    from bertcls.config import RunOptions, TrainConfig
    from bertcls.jobs import train as job

    _refuse_renamed(values)
    config, run = build(TrainConfig, values), build(RunOptions, values)
    try:
        cluster = {"coordinator": run.coordinator, "num_processes": run.num_processes, "process_id": run.process_id}
        outcome = job.train(
            config,
            run.experiment,
            run.run_name,
            system_metrics=run.system_metrics,
            resume_run_id=run.resume_run_id,
            cluster=cluster,
        )
    except KeyboardInterrupt as interrupt:
        command = getattr(interrupt, "resume_command", None)
        then = (
            f"a checkpoint was saved; continue it with: {command}"
            if command
            else ("it stopped before its first step: there is no checkpoint to resume from")
        )
        click.echo(f"interrupted ({interrupt or 'Ctrl-C'}): the MLflow run is marked KILLED; {then}", err=True)
        sys.exit(130)
    if outcome is None:  # a multi-process run's other processes: process 0 logged the run and prints it
        click.echo(f"process {run.process_id}: done (process 0 logged the run)")
        return
    click.echo(job.describe(outcome))


@main.command("evaluate")
@options("evaluate")
@friendly_errors
def evaluate(**values) -> None:
    """Evaluate a model on a split (default: the dataset and split recipe it was trained with)."""
    from bertcls.config import EvaluateConfig
    from bertcls.jobs import evaluate as job

    config = build(EvaluateConfig, values)
    overrides = {p.name: values[p.name] for p in job_params("evaluate") if p.inherited and values[p.name] is not None}
    outcome = job.evaluate(
        config.model_uri,
        config.split,
        overrides,
        config.batch_size,
        config.top_mistakes,
        config.experiment,
        tuple((config.extra_metric or "").split()),
    )
    click.echo(f"evaluation run {outcome.run_id}:")
    for key, value in sorted(outcome.metrics.items()):
        click.echo(f"  {key} = {value:.4f}")


@main.command("register")
@options("register")
@friendly_errors
def register(**values) -> None:
    """Register the best new run's model; move @champion only if it beats the current champion."""
    from bertcls.config import RegisterConfig
    from bertcls.jobs import register as job

    config = build(RegisterConfig, values)
    outcome = job.register(
        config.experiment, config.metric, config.name, config.force, config.dataset, config.run_id, config.direction
    )
    click.echo(outcome.message)
    if outcome.version is None:  # nothing was registered: there is no champion to load
        return
    example = "Leon Derczynski moved to Copenhagen." if outcome.task == "ner" else "free entry!!"
    click.echo("load it with:")
    click.echo(
        f"  python -c \"import mlflow; m = mlflow.pyfunc.load_model('models:/{outcome.name}@champion'); "
        f"print(m.predict(['{example}']))\""
    )


@main.command("distill")
@options("distill")
@friendly_errors
def distill(**values) -> None:
    """Train a smaller student on a teacher's soft labels; log it as a train run with the teacher beside it."""
    import dataclasses

    from bertcls.config import DistillConfig, RunOptions, TrainConfig
    from bertcls.jobs import distill as job

    names = {field.name for field in dataclasses.fields(DistillConfig)}
    distill_config = build(DistillConfig, {k: v for k, v in values.items() if k in names})
    config, run = build(TrainConfig, {k: v for k, v in values.items() if k not in names}), build(RunOptions, values)
    try:
        outcome = job.distill(distill_config, config, run.experiment, run.run_name, run.system_metrics)
    except KeyboardInterrupt as interrupt:
        click.echo(f"interrupted ({interrupt or 'Ctrl-C'}): the MLflow run is marked KILLED.", err=True)
        sys.exit(130)
    click.echo(job.describe(outcome))


@main.command("predict")
@options("predict")
@friendly_errors
def predict(**values) -> None:
    """Score a csv / tsv / jsonl / parquet file with a model: every row once, in order, answers beside its columns."""
    from bertcls.config import PredictConfig
    from bertcls.jobs import predict as job

    config = build(PredictConfig, values)
    try:
        outcome = job.predict(
            config.model_uri,
            config.input,
            config.output,
            config.text_column,
            config.text_pair_column,
            config.batch_size,
            config.chunk_rows,
            config.calibrated,
            config.threshold,
            config.experiment,
        )
    except KeyboardInterrupt as interrupt:
        click.echo(
            f"interrupted ({interrupt or 'Ctrl-C'}): the MLflow run is marked KILLED; no output was written (an "
            "earlier file of that name is untouched). Run it again to score the file.",
            err=True,
        )
        sys.exit(130)
    click.echo(job.describe(outcome))


@main.command("runs")
@click.option("--experiment", default=None, help="Only this experiment (default: all).")
@click.option("--stale", is_flag=True, help="Only RUNNING runs whose process is gone or silent.")
@click.option("--mark-failed", is_flag=True, help="End the stale runs FAILED (implies --stale).")
@click.option(
    "--heartbeat-timeout",
    default=120,
    show_default=True,
    type=int,
    help="Minutes without a heartbeat after which a run of another host counts as stale.",
)
@friendly_errors
def runs(experiment, stale, mark_failed, heartbeat_timeout) -> None:
    """List RUNNING runs with the process that owns each; --stale --mark-failed ends the dead ones FAILED."""
    from bertcls.jobs import runs as job

    found = job.running_runs(experiment, heartbeat_timeout * 60.0, mark_failed=mark_failed)
    shown = [r for r in found if r.stale_reason or not (stale or mark_failed)]
    if not shown:
        click.echo("no stale runs" if stale or mark_failed else "no RUNNING runs")
    else:
        click.echo("run_id  experiment_id  run_name  host:pid  state")
    for run in shown:
        alive = "alive" if run.owner != "?" else "unknown (no process tags: not a bertcls run, or MLflow's own orphan)"
        state = f"STALE: {run.stale_reason}" if run.stale_reason else alive
        done = " -> marked FAILED" if run.marked_failed else ""
        click.echo(f"{run.run_id}  {run.experiment}  {run.name or '-'}  {run.owner}  {state}{done}")


if __name__ == "__main__":
    main()
