"""The `bertcls` command line; MLproject's entry points call the same click commands."""

from __future__ import annotations

import functools
import os
import sys

import click

from bertcls.config import LONG_TEXT_MODES
from bertcls.errors import BertclsError

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


class WholeNumber(click.ParamType):
    """An integer that also accepts MLflow's float spelling ("3.0"), since MLproject has no int type."""

    name = "integer"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a whole number", param, ctx)
        if not number.is_integer():
            self.fail(f"{value!r} is not a whole number", param, ctx)
        return int(number)


INT = WholeNumber()


class FloatOrUnset(click.ParamType):
    """A float, or MLproject's "none" for "as the source run had it"."""

    name = "float"

    def convert(self, value, param, ctx):
        from bertcls.config import is_unset

        if value is None or isinstance(value, float) or is_unset(value):
            return None if is_unset(value) else value
        try:
            return float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)


FLOAT_OR_UNSET = FloatOrUnset()


def friendly_errors(command):
    """Show a BertclsError as one paragraph on stderr and exit 2, without a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except BertclsError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(err.exit_code)

    return wrapper


def _data_option_decorator(with_defaults: bool):
    """Options naming a dataset and its columns. Without defaults (evaluate), unset means "as trained"."""

    def default(value):
        return value if with_defaults else None

    def decorate(command):
        options = [
            click.option(
                "--dataset",
                default=default("sms_spam"),
                show_default=with_defaults,
                help="Bundled name (sms_spam, bbc_news), glue/<task>, or a hub dataset id.",
            ),
            click.option("--dataset-config", default=None, help="Hub dataset configuration name."),
            click.option("--train-file", default=None, help="Local CSV/TSV/JSON/JSONL/Parquet training file."),
            click.option("--validation-file", default=None),
            click.option("--test-file", default=None),
            click.option("--text-column", default=None, help="Text column (a digit for headerless TSV/CSV)."),
            click.option("--text-pair-column", default=None, help="Second text column for sentence-pair tasks."),
            click.option("--label-column", default=None),
            click.option(
                "--split-seed",
                default=default(42),
                show_default=with_defaults,
                type=INT,
                help="Seed of the 80/10/10 split for sources without validation/test.",
            ),
            click.option("--max-train-samples", default=None, type=INT),
            click.option("--max-eval-samples", default=None, type=INT),
            click.option(
                "--max-buckets",
                default=default(12),
                show_default=with_defaults,
                type=INT,
                help="Distinct padded lengths (compiled shapes), fitted to the training lengths.",
            ),
            click.option(
                "--max-dropped-fraction",
                default=default(0.05),
                show_default=with_defaults,
                type=float if with_defaults else FLOAT_OR_UNSET,
                help="Largest share of a split's rows that may be dropped for a missing text or label.",
            ),
        ]
        if with_defaults:  # how text becomes model rows; a trained model keeps its own (evaluate has none)
            options += [
                click.option("--max-seq-length", default=128, show_default=True, type=INT),
                click.option(
                    "--long-text",
                    type=click.Choice(LONG_TEXT_MODES),
                    default="truncate",
                    show_default=True,
                    help="Texts over max-seq-length: keep the first window, or read all as overlapping windows "
                    "(trained on as examples; predictions average the windows' logits).",
                ),
                click.option("--window-overlap", default=64, show_default=True, type=INT, help="Tokens shared."),
                click.option("--max-windows", default=8, show_default=True, type=INT, help="Windows kept per text."),
            ]
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


data_options = _data_option_decorator(with_defaults=True)
data_options_as_trained = _data_option_decorator(with_defaults=False)


def data_config_from(kwargs: dict):
    from bertcls.config import DataConfig, is_unset

    blank = lambda v: None if is_unset(v) or v == 0 else v  # noqa: E731 - MLproject passes "none"/0
    return DataConfig(
        dataset=kwargs.pop("dataset"),
        dataset_config=blank(kwargs.pop("dataset_config")),
        train_file=blank(kwargs.pop("train_file")),
        validation_file=blank(kwargs.pop("validation_file")),
        test_file=blank(kwargs.pop("test_file")),
        text_column=blank(kwargs.pop("text_column")),
        text_pair_column=blank(kwargs.pop("text_pair_column")),
        label_column=blank(kwargs.pop("label_column")),
        max_seq_length=kwargs.pop("max_seq_length"),
        split_seed=kwargs.pop("split_seed"),
        max_train_samples=blank(kwargs.pop("max_train_samples")),
        max_eval_samples=blank(kwargs.pop("max_eval_samples")),
        max_buckets=kwargs.pop("max_buckets"),
        long_text=kwargs.pop("long_text"),
        window_overlap=kwargs.pop("window_overlap"),
        max_windows=kwargs.pop("max_windows"),
        max_dropped_fraction=kwargs.pop("max_dropped_fraction"),
    )


@click.group()
def main() -> None:
    """Fine-tune BERT-family encoders for text classification, tracked in MLflow."""


@main.command("data-stats")
@data_options
@click.option(
    "--model",
    default="sentence-transformers/all-MiniLM-L6-v2",
    show_default=True,
    help="Model whose tokenizer measures lengths.",
)
@click.option("--batch-size", default=32, show_default=True, type=INT)
@friendly_errors
def data_stats(model: str, batch_size: int, **kwargs) -> None:
    """Split sizes, cleaning counts, labels and padding efficiency (buckets vs pad-to-max)."""
    from bertcls.data.report import data_report
    from bertcls.hub import resolve_model
    from bertcls.tokenizer import load_tokenizer

    config = data_config_from(kwargs)
    click.echo(data_report(config, load_tokenizer(resolve_model(model)), batch_size))


@main.command("train")
@click.option(
    "--model",
    default="sentence-transformers/all-MiniLM-L6-v2",
    show_default=True,
    help="Local directory or Hugging Face hub id of a BERT-family checkpoint.",
)
@data_options
@click.option(
    "--head",
    type=click.Choice(["linear", "mean", "mlp"]),
    default="mean",
    show_default=True,
    help="linear: pooler on [CLS]; mean: masked mean of token states; mlp: 2-layer MLP on [CLS].",
)
@click.option("--compute-dtype", type=click.Choice(["float32", "bfloat16"]), default="float32", show_default=True)
@click.option("--lr", default=5e-5, show_default=True, type=float, help="Peak learning rate.")
@click.option("--epochs", default=3, show_default=True, type=INT)
@click.option("--batch-size", default=32, show_default=True, type=INT, help="Global batch over all devices.")
@click.option("--eval-batch-size", default=64, show_default=True, type=INT)
@click.option("--weight-decay", default=0.01, show_default=True, type=float)
@click.option("--warmup-ratio", default=0.1, show_default=True, type=float)
@click.option("--max-grad-norm", default=1.0, show_default=True, type=float, help="0 disables clipping.")
@click.option("--seed", default=42, show_default=True, type=INT)
@click.option("--early-stopping-patience", default=0, show_default=True, type=INT, help="0 = off.")
@click.option(
    "--experiment",
    default="bertcls",
    show_default=True,
    help="MLflow experiment (ignored under `mlflow run`, which chooses it).",
)
@click.option("--run-name", default=None)
@friendly_errors
def train(
    model,
    head,
    compute_dtype,
    lr,
    epochs,
    batch_size,
    eval_batch_size,
    weight_decay,
    warmup_ratio,
    max_grad_norm,
    seed,
    early_stopping_patience,
    experiment,
    run_name,
    **data_kwargs,
) -> None:
    """Fine-tune a model and log params, per-epoch metrics, figures and the best model to MLflow."""
    from bertcls import jobs
    from bertcls.config import OptimConfig, TrainConfig

    config = TrainConfig(
        model=model,
        head=head,
        compute_dtype=compute_dtype,
        epochs=epochs,
        batch_size=batch_size,
        eval_batch_size=eval_batch_size,
        seed=seed,
        early_stopping_patience=early_stopping_patience,
        data=data_config_from(data_kwargs),
        optim=OptimConfig(lr=lr, weight_decay=weight_decay, warmup_ratio=warmup_ratio, max_grad_norm=max_grad_norm),
    )
    try:
        outcome = jobs.train(config, experiment=experiment, run_name=run_name)
    except KeyboardInterrupt as interrupt:
        click.echo(
            f"interrupted ({interrupt or 'Ctrl-C'}): the MLflow run is marked KILLED; no model was logged.", err=True
        )
        sys.exit(130)
    click.echo(jobs.describe(outcome))


@main.command("evaluate")
@click.option(
    "--model-uri", required=True, help="runs:/<run_id>/model, models:/<name>@<alias> or models:/<name>/<version>."
)
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "validation", "test"]))
@data_options_as_trained
@click.option("--batch-size", default=64, show_default=True, type=INT)
@click.option("--top-mistakes", default=20, show_default=True, type=INT, help="Most confident mistakes to log.")
@click.option("--experiment", default="bertcls", show_default=True)
@click.option(
    "--extra-metric",
    "extra_metrics",
    multiple=True,
    help="An `evaluate` metric by local script path (offline) or hub id; repeatable.",
)
@friendly_errors
def evaluate(model_uri, split, batch_size, top_mistakes, experiment, extra_metrics, **data_kwargs) -> None:
    """Evaluate a model on a split (default: the dataset and split recipe it was trained with)."""
    from bertcls import jobs
    from bertcls.config import is_unset

    overrides = {k: v for k, v in data_kwargs.items() if not is_unset(v) and v != 0}  # MLproject: "none"/0
    outcome = jobs.evaluate(
        model_uri,
        split,
        overrides,
        batch_size,
        top_mistakes,
        experiment,
        tuple(m for m in extra_metrics if not is_unset(m)),
    )
    click.echo(f"evaluation run {outcome.run_id}:")
    for key, value in sorted(outcome.metrics.items()):
        click.echo(f"  {key} = {value:.4f}")


@main.command("register")
@click.option("--experiment", default="bertcls", show_default=True, help="Experiment whose runs compete.")
@click.option(
    "--metric",
    default="val_accuracy",
    show_default=True,
    help="Metric to rank runs (val_* compares the logged best epoch; test_* too).",
)
@click.option("--name", default=None, help="Registered model name (default bertcls-<dataset>).")
@click.option(
    "--force",
    default="false",
    show_default=True,
    type=click.Choice(["true", "false", "True", "False", "1", "0"]),
    help="Promote even if it loses.",
)
@click.option("--dataset", default=None, help="Only runs on this dataset (tag).")
@click.option("--run-id", default=None, help="Register this run instead of the best new one.")
@friendly_errors
def register(experiment, metric, name, force, dataset, run_id) -> None:
    """Register the best new run's model; move @champion only if it beats the current champion."""
    from bertcls import jobs
    from bertcls.config import is_unset

    unset_to_none = lambda v: None if is_unset(v) else v  # noqa: E731
    outcome = jobs.register(
        experiment,
        metric,
        unset_to_none(name),
        force.lower() in ("true", "1"),
        unset_to_none(dataset),
        unset_to_none(run_id),
    )
    click.echo(outcome.message)
    click.echo("load it with:")
    click.echo(
        f"  python -c \"import mlflow; m = mlflow.pyfunc.load_model('models:/{outcome.name}@champion'); "
        f"print(m.predict(['free entry!!']))\""
    )


@main.command("runs")
@click.option("--experiment", default=None, help="Only this experiment (default: all).")
@click.option("--stale", is_flag=True, help="Only RUNNING runs whose process is gone or silent.")
@click.option("--mark-failed", is_flag=True, help="End the stale runs FAILED (implies --stale).")
@click.option(
    "--heartbeat-timeout",
    default=120,
    show_default=True,
    type=INT,
    help="Minutes without a heartbeat after which a run of another host counts as stale.",
)
@friendly_errors
def runs(experiment, stale, mark_failed, heartbeat_timeout) -> None:
    """List RUNNING runs with the process that owns each; --stale --mark-failed ends the dead ones FAILED."""
    from bertcls import jobs

    found = jobs.running_runs(experiment, heartbeat_timeout * 60.0, mark_failed=mark_failed)
    shown = [r for r in found if r.stale_reason or not (stale or mark_failed)]
    if not shown:
        click.echo("no stale runs" if stale or mark_failed else "no RUNNING runs")
    else:
        click.echo("run_id  experiment_id  run_name  host:pid  state")
    for run in shown:
        state = f"STALE: {run.stale_reason}" if run.stale_reason else "alive"
        done = " -> marked FAILED" if run.marked_failed else ""
        click.echo(f"{run.run_id}  {run.experiment}  {run.name or '-'}  {run.owner}  {state}{done}")


if __name__ == "__main__":
    main()
