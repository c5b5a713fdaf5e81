"""A model card written from a training run's own records: base model and licence, task and labels, data and
split recipe, hyperparameters, validation and test metrics, how to load the model. The same text travels
with the logged MLflow model (`model_card.md`) and with a Hugging Face export (`README.md`).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

HYPERPARAMETERS = (
    "finetune",
    "freeze_layers",
    "head",
    "lr",
    "weight_decay",
    "warmup_ratio",
    "llrd",
    "epochs",
    "batch_size",
    "grad_accum_steps",
    "max_grad_norm",
    "class_weights",
    "focal_gamma",
    "precision",
    "seed",
)
DATA_RECIPE = (
    "dataset",
    "dataset_config",
    "train_file",
    "max_seq_length",
    "long_text",
    "split_seed",
    "max_train_samples",
)


@dataclasses.dataclass(frozen=True)
class CardFacts:
    base_model: str
    base_licence: str | None
    task: str
    label_names: tuple[str, ...]
    params: dict[str, str]  # the run's params (flat train config)
    metrics: dict[str, float]  # best_val_* and test_*
    run_id: str | None
    best_epoch: int | None
    kind: str = "classification"  # TaskSpec.kind: classification, multilabel, regression, ner (a word tagger)
    calibration: dict | None = None  # Calibration.to_dict() saved with the model; None: not decided (a checkpoint)

    @property
    def token_level(self) -> bool:
        """A word tagger: *ForTokenClassification, entities, not one label per text."""
        return self.kind == "ner"


def base_licence(model_dir: str | None) -> str | None:
    """The `license:` of the base model's own card (README.md front matter), if its files are here."""
    if not model_dir:
        return None
    readme = Path(model_dir) / "README.md"
    if not readme.is_file():
        return None
    front = readme.read_text(encoding="utf-8", errors="replace").split("---")
    match = re.search(r"^license:\s*(\S+)", front[1] if len(front) > 2 else "", re.M)
    return match.group(1) if match else None


def _table(rows: dict[str, object]) -> list[str]:
    lines = ["| | |", "|---|---|"]
    return lines + [f"| {k} | {v} |" for k, v in rows.items()]


def render(facts: CardFacts, hugging_face: bool) -> str:
    """The card as markdown; `hugging_face`: for an export directory (front matter and its loading code)."""
    front = _front_matter(facts) if hugging_face else []
    return "\n".join([*front, *_description(facts), *_how_to_load(facts, hugging_face)])


def _front_matter(facts: CardFacts) -> list[str]:
    """The Hugging Face hub's YAML header."""
    licence = [f"license: {facts.base_licence}"] if facts.base_licence else []
    pipeline = "token-classification" if facts.token_level else "text-classification"
    header = ["---", "library_name: transformers", f"pipeline_tag: {pipeline}"]
    return [*header, f"base_model: {facts.base_model}", *licence, "tags:", "- bertcls", "---", ""]


def _description(facts: CardFacts) -> list[str]:
    """Base model, task and labels, data recipe, hyperparameters and results."""
    params = facts.params
    licence = facts.base_licence or "unknown: see the base model's card"
    dataset = params.get("dataset") or Path(params.get("train_file") or "data").name
    run = f", MLflow run `{facts.run_id}`" if facts.run_id else ""
    labels = ", ".join(f"{i}: `{name}`" for i, name in enumerate(facts.label_names))
    best = f"Validation metrics are those of the best epoch ({facts.best_epoch}); " if facts.best_epoch else ""
    return [
        f"# {facts.task} {NOUNS.get(facts.kind, 'classifier')} fine-tuned from {facts.base_model}",
        "",
        f"Fine-tuned by [bertcls](https://github.com/) (JAX / Flax NNX) on `{dataset}`{run}.",
        "",
        "## Base model",
        "",
        f"`{facts.base_model}`, licence: {licence}. The fine-tuned weights inherit the base model's licence terms.",
        "",
        "## Task and labels",
        "",
        _task_line(facts.kind, facts.label_names, labels),
        "",
        *_decoding(facts),
        *_probabilities(facts),
        "## Data and split",
        "",
        *_table({k: params[k] for k in DATA_RECIPE if params.get(k) not in (None, "", "None")}),
        "",
        "Splits come from the dataset's own or from bertcls's reproducible 80/10/10 split (seeded by `split_seed`).",
        "",
        "## Hyperparameters",
        "",
        *_table({k: params[k] for k in HYPERPARAMETERS if k in params}),
        "",
        "## Results",
        "",
        *_table({k: f"{v:.4f}" for k, v in sorted(facts.metrics.items())}),
        "",
        best + "test metrics were computed once, with the best epoch's weights.",
        "",
    ]


NOUNS = {"ner": "tagger", "multilabel": "multi-label classifier", "regression": "regressor"}
ANSWERS = {  # what the MLflow model's predict returns, per task kind
    "ner": "entities: type, text, start, end, score",
    "multilabel": "the label set and one probability per label",
    "regression": "a score per text",
}


def _task_line(kind: str, label_names: tuple[str, ...], labels: str) -> str:
    if kind == "ner":
        return f"Token classification: a tag per word (first subword), {len(label_names)} tags (id: name): {labels}."
    if kind == "multilabel":
        return (
            f"Multi-label text classification: each of {len(label_names)} labels (id: name) is present or absent, "
            f"a sigmoid per label: {labels}. A text may have none, one or several."
        )
    if kind == "regression":
        return "Text regression: one score per text, trained with the squared error."
    return f"Single-label text classification, {len(label_names)} labels (id: name): {labels}."


def _decoding(facts: CardFacts) -> list[str]:
    """How a tagger's per-word probabilities became its tags (the run's tag_decoding and tag_scheme params)."""
    decoding, scheme = facts.params.get("tag_decoding"), facts.params.get("tag_scheme")
    if facts.kind != "ner" or decoding is None:
        return []
    if decoding == "viterbi" and scheme in ("IOB2", "IOBES"):
        return [
            f"Tags were scored (and the MLflow model answers them) as the most probable tag sequence the {scheme} "
            "scheme allows (Viterbi decoding, `tag_decoding=viterbi`), so no entity is spelled by a broken sequence; "
            "transformers' pipeline answers each word's argmax tag instead, which can differ where that sequence "
            "is broken.",
            "",
        ]
    return [f"Tags are each word's most probable tag (argmax; tag scheme: {scheme or 'none'}).", ""]


def _probabilities(facts: CardFacts) -> list[str]:
    """How the probabilities were calibrated and the decisions made, from the calibration saved with the model."""
    calibration, metrics = facts.calibration, facts.metrics
    if not calibration or facts.kind in ("ner", "regression"):
        return []
    ece = ""
    if "test_ece" in metrics and "test_ece_uncalibrated" in metrics:
        ece = f" Test ECE (15 bins) {metrics['test_ece_uncalibrated']:.4f} before, {metrics['test_ece']:.4f} after."
    lines = ["## Probabilities and decisions", ""]
    split = calibration.get("fitted_split", "validation")
    split = "held-out calibration" if split == "calibration" else split  # texts neither trained on nor chose the epoch
    if facts.kind == "multilabel" and calibration.get("temperatures"):
        lines += [
            f"Each label's probability is sigmoid(logit / T) with its own temperature T, fitted on "
            f"{calibration.get('fitted_on', 0)} {split} texts; a label is answered when its calibrated probability "
            f"reaches its threshold, tuned on the same texts to maximise that label's F1.{ece} The MLflow model "
            "applies both (params `calibrated=false` for the raw sigmoid, `threshold=` for one threshold for all "
            "labels); the Hugging Face export's logits are the raw ones.",
            "",
            "| label | temperature | threshold |",
            "|---|---|---|",
        ]
        rows = zip(facts.label_names, calibration["temperatures"], calibration.get("thresholds") or (), strict=False)
        return [*lines, *(f"| {name} | {t:.4g} | {th:.4g} |" for name, t, th in rows), ""]
    if not calibration.get("fitted_on"):
        return [*lines, f"Not calibrated: {calibration.get('note') or 'no temperature was fitted'}.", ""]
    temperature = float(calibration.get("temperature", 1.0))
    prior = calibration.get("prior_sd")
    prior = f" plus a prior on log T (normal, sd {prior:g}) that holds T near 1 on few texts" if prior else ""
    return [
        *lines,
        f"Probabilities are softmax(logits / T) with T = {temperature:.4g}, fitted on "
        f"{calibration['fitted_on']} {split} texts by minimising their negative log-likelihood{prior} "
        f"(temperature scaling).{ece} The MLflow model applies it (param `calibrated=false` for the raw softmax); "
        f"the Hugging Face export's logits are the raw ones: divide them by {temperature:.4g} for the same "
        "probabilities.",
        "",
    ]


def _how_to_load(facts: CardFacts, hugging_face: bool) -> list[str]:
    """The loading code (transformers for an export, MLflow for a logged model) and how texts must be read."""
    auto = "AutoModelForTokenClassification" if facts.token_level else "AutoModelForSequenceClassification"
    if hugging_face:
        code = [
            f"from transformers import {auto}, AutoTokenizer",
            f"model = {auto}.from_pretrained('<this directory or hub repo>')",
            "tokenizer = AutoTokenizer.from_pretrained('<this directory or hub repo>')",
        ]
    else:
        code = [
            "import mlflow",
            f"model = mlflow.pyfunc.load_model('runs:/{facts.run_id or '<run_id>'}/model')",
            "model.predict(['some text'])  # " + ANSWERS.get(facts.kind, "label and one probability per class"),
        ]
    max_len = facts.params.get("max_seq_length", "128")
    windows = facts.params.get("long_text") == "windows"
    reading = " (long texts read as overlapping windows, their logits averaged)" if windows else ""
    if facts.token_level:
        reading = " (longer sentences as overlapping windows, every word predicted once)"
    return [
        "## How to load it",
        "",
        "```python",
        *code,
        "```",
        "",
        f"The model was trained on texts cut to {max_len} tokens{reading}; read texts the same way for the same "
        "results.",
        "",
    ]


def render_encoder(
    base_model: str,
    licence: str | None,
    corpus: str,
    recipe: str,
    params: dict[str, str],
    history: list[dict[str, float]],
    run_id: str,
) -> str:
    """The card of an encoder adapted by `pretrain`: what it started from, what it read, what it learned."""
    before, after = history[0]["val_mlm_loss"], history[-1]["val_mlm_loss"]
    shown = ("mlm_probability", "lr", "weight_decay", "warmup_ratio", "epochs", "batch_size", "max_seq_length", "seed")
    return "\n".join(
        [
            "---",
            "library_name: transformers",
            "pipeline_tag: fill-mask",
            f"base_model: {base_model}",
            *([f"license: {licence}"] if licence else []),
            "tags:",
            "- bertcls",
            "---",
            "",
            f"# {base_model}, masked-LM pre-training continued on `{corpus}`",
            "",
            f"Adapted by bertcls, MLflow run `{run_id}`, from `{base_model}` (licence: "
            f"{licence or 'unknown: see the base model card'}; the adapted weights inherit its terms).",
            "",
            f"Texts: {recipe}. Masking: BERT's rule (15 % of ordinary tokens by default; 80 % [MASK], 10 % random, "
            "10 % kept), the MLM head tied to the word embeddings.",
            "",
            *_table({k: params[k] for k in shown if k in params}),
            "",
            f"Held-out MLM loss {before:.4f} before, {after:.4f} after ({len(history) - 1} epoch(s)).",
            "",
            "## Fine-tune it",
            "",
            "```",
            f"mlflow run . -e train -P model=runs:/{run_id}/encoder",
            "```",
            "",
        ]
    )
