"""The `bertcls` command line; MLproject's entry points call the same click commands."""

from __future__ import annotations

import functools
import sys

import click

from bertcls.errors import BertclsError


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
        click.option("--max-seq-length", default=128, show_default=True, type=int),
        click.option(
            "--split-seed",
            default=42,
            show_default=True,
            type=int,
            help="Seed of the 80/10/10 split for sources without validation/test.",
        ),
        click.option("--max-train-samples", default=None, type=int),
        click.option("--max-eval-samples", default=None, type=int),
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
@click.option("--batch-size", default=32, show_default=True, type=int)
@friendly_errors
def data_stats(model: str, batch_size: int, **kwargs) -> None:
    """Split sizes, cleaning counts, labels and padding efficiency (buckets vs pad-to-max)."""
    from bertcls.data.report import data_report
    from bertcls.hub import resolve_model
    from bertcls.tokenizer import load_tokenizer

    config = data_config_from(kwargs)
    click.echo(data_report(config, load_tokenizer(resolve_model(model)), batch_size))
