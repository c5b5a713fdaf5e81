"""The `bertcls` command line; MLproject's entry points call the same click commands."""

from __future__ import annotations

import functools
import sys

import click

from bertcls.errors import BertclsError


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


def data_options(command):
    """Options naming a dataset and its columns (shared by every command that reads data)."""
    options = [
        click.option(
            "--dataset",
            default="sms_spam",
            show_default=True,
            help="Bundled name (sms_spam, bbc_news), glue/<task>, or a hub dataset id.",
        ),
        click.option("--dataset-config", default=None, help="Hub dataset configuration name."),
        click.option("--train-file", default=None, help="Local CSV/TSV/JSON/JSONL/Parquet training file."),
        click.option("--validation-file", default=None),
        click.option("--test-file", default=None),
        click.option("--text-column", default=None, help="Text column (a digit for headerless TSV/CSV)."),
        click.option("--text-pair-column", default=None, help="Second text column for sentence-pair tasks."),
        click.option("--label-column", default=None),
        click.option("--max-seq-length", default=128, show_default=True, type=INT),
        click.option(
            "--split-seed",
            default=42,
            show_default=True,
            type=INT,
            help="Seed of the 80/10/10 split for sources without validation/test.",
        ),
        click.option("--max-train-samples", default=None, type=INT),
        click.option("--max-eval-samples", default=None, type=INT),
        click.option(
            "--max-buckets",
            default=12,
            show_default=True,
            type=INT,
            help="Distinct padded lengths (compiled shapes), fitted to the training lengths.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def data_config_from(kwargs: dict):
    from bertcls.config import DataConfig

    blank = lambda v: v if v not in ("", "None", None, 0) else None  # noqa: E731 - MLproject passes ""/0
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


if __name__ == "__main__":
    main()
