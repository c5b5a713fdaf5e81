"""The ONNX export job: a logged or registered model as ONNX files, checked against our own outputs on its test split.

The directory gets `model.onnx` (float32), with `--quantize int8` also `model.int8.onnx`, the tokenizer files, the
model's saved settings (`bertcls_config.json`: labels, how it reads text, its calibration) and `onnx_report.json`.
Before anything is written, both graphs are run by ONNX Runtime on the test split of the model's own dataset and
recipe: the float32 graph must give our probabilities within 1e-4 (else the export is refused), and the report
holds each path's texts/s, the int8 graph's largest probability change, its agreement with us and, for a
classifier, the test accuracy of each. The report is logged to the model's training run as `onnx_*` metrics, and
the directory as an MLflow model served by ONNX Runtime without JAX (`onnx_model`; the int8 graph when made), or,
for what only the JAX model serves (windows, word taggers), as the run's `onnx_export/` artifacts.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import special

from bertcls.data.tags import OUTSIDE
from bertcls.errors import ExportError
from bertcls.export import onnx as onnx_export
from bertcls.export.huggingface import TOKENIZER_FILES
from bertcls.jobs.evaluate import model_and_data
from bertcls.model.weights import OWN_CONFIG, load_model, written_atomically
from bertcls.serving.onnx_runtime import servable
from bertcls.serving.predictor import Predictor
from bertcls.tracking import artifacts, runs
from bertcls.tracking.registry import resolve_model_uri
from bertcls.train.inference import infer_outputs, infer_word_outputs

PARITY_TOLERANCE = 1e-4  # largest |probability difference| the float32 graph may show against our model
QUANTIZE = (None, "int8")
INT8_AGREEMENT_WARNING = 0.99  # an int8 graph answering otherwise on more of the test texts is flagged
REPORT = "onnx_report.json"


@dataclasses.dataclass
class OnnxOutcome:
    directory: Path
    source_run_id: str | None
    report: dict[str, float]
    model_uri: str | None = None  # the ONNX-backed MLflow model logged to the source run
    not_served: str | None = None  # why no ONNX-backed MLflow model was logged


def export_onnx(model_uri: str, directory: str, quantize: str | None = None, batch_size: int = 32) -> OnnxOutcome:
    """Write the model as ONNX (and int8) into a new directory, after checking it on the test split; log both."""
    if quantize not in QUANTIZE:
        raise ExportError(f"Unknown quantize {quantize!r}: use int8 (ONNX Runtime dynamic quantization) or none.")
    out_dir = Path(directory)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ExportError(f"{out_dir} exists and is not empty. Export into a new (or empty) directory.")
    ref = resolve_model_uri(model_uri)
    predictor, _, data = model_and_data(ref, "test", {}, batch_size)
    model, _ = load_model(ref.local_dir)
    with tempfile.TemporaryDirectory(prefix="bertcls-onnx-") as tmp:
        graphs = {"fp32": onnx_export.write_onnx(model, Path(tmp) / "model.onnx")}
        if quantize == "int8":
            graphs["int8"] = onnx_export.quantize_int8(graphs["fp32"], Path(tmp) / "model.int8.onnx")
        report = _measure(predictor, data, graphs, batch_size)
        if report["onnx_max_prob_diff"] > PARITY_TOLERANCE:
            raise ExportError(
                f"The ONNX graph's probabilities differ from the model's by up to {report['onnx_max_prob_diff']:.2e} "
                f"on the test split (the bound is {PARITY_TOLERANCE:g}): nothing was written. Please report it with "
                "the model's config (bertcls_config.json)."
            )
        with written_atomically(out_dir) as staging:
            for path in graphs.values():
                shutil.move(str(path), staging / path.name)
            for name in TOKENIZER_FILES:
                if (ref.local_dir / name).is_file():
                    shutil.copy(ref.local_dir / name, staging / name)
            (staging / OWN_CONFIG).write_text(json.dumps(_settings(ref.local_dir, predictor), indent=2), "utf-8")
            (staging / REPORT).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    model_uri_out, not_served = None, servable(_settings(ref.local_dir, predictor))
    if ref.source_run_id:
        runs.log_metrics_to(ref.source_run_id, report)
        if not_served is None:  # the export, as an MLflow model that ONNX Runtime serves without JAX
            examples = list(data.texts["test"]["text"][:2]) if "text" in data.texts["test"].column_names else []
            graph = "model.int8.onnx" if quantize == "int8" else "model.onnx"
            info = artifacts.log_onnx_model(ref.source_run_id, out_dir, graph, examples or ["free entry", "see you"])
            model_uri_out = info.model_uri
        else:
            artifacts.log_artifacts_to(ref.source_run_id, out_dir, "onnx_export")
    return OnnxOutcome(out_dir, ref.source_run_id, report, model_uri_out, not_served)


def _settings(model_dir: Path, predictor: Predictor) -> dict:
    """The saved model's config with its reading settings and calibration spelled out in the current format (a
    model saved before they had their own keys gets them), for whoever runs the graph."""
    meta = json.loads((model_dir / OWN_CONFIG).read_text(encoding="utf-8"))
    return {**meta, "reading_settings": predictor.settings.to_dict(), "calibration": predictor.calibration.to_dict()}


def _outputs(predictor: Predictor, data, forward) -> np.ndarray:
    """[T, C] per text (a windowed text: the mean of its windows) or, a word tagger, [W, C] per word."""
    split, task = data.splits["test"], data.task
    if task.token_level:
        fallback = task.label_names.index(OUTSIDE) if OUTSIDE in task.label_names else 0
        args = (forward, predictor.batch_size, predictor.buckets, task.num_labels, fallback)
        return infer_word_outputs(split, *args)[0]
    return infer_outputs(split, forward, predictor.batch_size, predictor.buckets, task.num_labels)


def _timed(predictor: Predictor, data, forward) -> tuple[np.ndarray, float]:
    """The outputs of a second pass (the first compiles or warms up), and that pass's texts per second."""
    _outputs(predictor, data, forward)
    start = time.perf_counter()
    outputs = _outputs(predictor, data, forward)
    return outputs, data.splits["test"].num_texts / (time.perf_counter() - start)


def _probabilities(predictor: Predictor, data, outputs: np.ndarray) -> np.ndarray:
    """What the served model answers from these outputs: calibrated probabilities, tag probabilities, or scores."""
    if data.task.token_level:
        return special.softmax(outputs.astype(np.float64), axis=-1)
    if data.task.is_regression:
        return outputs.astype(np.float64)
    return predictor.probabilities(outputs)


def _measure(predictor: Predictor, data, graphs: dict[str, Path], batch_size: int) -> dict[str, float]:
    """Each path's texts/s on the test split; each graph's largest probability difference from ours, its argmax
    agreement, and the test accuracy of a single-label classifier."""
    ours, ours_speed = _timed(predictor, data, predictor.forward_batch)
    reference = _probabilities(predictor, data, ours)
    labels = data.splits["test"].text_labels()
    single_label = not (data.task.token_level or data.task.multi_label or data.task.is_regression)
    report = {"onnx_test_texts": float(data.splits["test"].num_texts), "jax_texts_per_s": ours_speed}
    if single_label:
        report["onnx_jax_test_accuracy"] = float((ours.argmax(-1) == labels).mean())
    for kind, path in graphs.items():
        session = onnx_export.session(path)
        outputs, speed = _timed(predictor, data, lambda batch, s=session: onnx_export.run_logits(s, batch))
        probs = _probabilities(predictor, data, outputs)
        name = "onnx" if kind == "fp32" else f"onnx_{kind}"
        report[f"{name}_max_prob_diff"] = float(np.abs(probs - reference).max()) if len(probs) else 0.0
        report[f"{name}_texts_per_s"] = speed
        report[f"{name}_speedup_vs_jax"] = speed / ours_speed
        if not data.task.is_regression:
            if data.task.multi_label:
                agree = (probs >= predictor.thresholds()) == (reference >= predictor.thresholds())
                report[f"{name}_agreement"] = float(agree.all(axis=-1).mean())
            else:
                report[f"{name}_agreement"] = float((outputs.argmax(-1) == ours.argmax(-1)).mean())
        if single_label:
            accuracy = float((outputs.argmax(-1) == labels).mean())
            report[f"{name}_test_accuracy"] = accuracy
            report[f"{name}_test_accuracy_change"] = accuracy - report["onnx_jax_test_accuracy"]
    if "onnx_int8_texts_per_s" in report:
        report["onnx_int8_speedup_vs_fp32"] = report["onnx_int8_texts_per_s"] / report["onnx_texts_per_s"]
    return report


def describe(outcome: OnnxOutcome) -> str:
    r = outcome.report
    lines = [f"exported ONNX to {outcome.directory} (checked on {int(r['onnx_test_texts'])} test texts):"]
    lines.append(f"  fp32: max |prob diff| {r['onnx_max_prob_diff']:.2e}, {r['onnx_texts_per_s']:.0f} texts/s")
    if "onnx_int8_texts_per_s" in r:
        lines.append(
            f"  int8: max |prob diff| {r['onnx_int8_max_prob_diff']:.3f}, {r['onnx_int8_texts_per_s']:.0f} texts/s "
            f"({r['onnx_int8_speedup_vs_fp32']:.2f} x fp32)"
            + (f", same answer on {r['onnx_int8_agreement']:.1%} of test texts" if "onnx_int8_agreement" in r else "")
            + (
                f", test accuracy change {r['onnx_int8_test_accuracy_change']:+.4f}"
                if "onnx_int8_test_accuracy" in r
                else ""
            )
        )
        if r.get("onnx_int8_agreement", 1.0) < INT8_AGREEMENT_WARNING:
            lines.append(
                f"  warning: the int8 graph answers differently from the model on "
                f"{1 - r['onnx_int8_agreement']:.1%} of the test texts (labels, or multi-label sets at the saved "
                "thresholds, which sit close to many probabilities); the logged onnx_model serves it. Export "
                "without --quantize for the float32 graph, which answers as the model does"
            )
    lines.append(f"  ours (JAX): {r['jax_texts_per_s']:.0f} texts/s")
    if outcome.model_uri:
        lines.append(
            f"  logged to run {outcome.source_run_id} (onnx_* metrics) as {outcome.model_uri}, an MLflow model "
            "ONNX Runtime serves without JAX: mlflow models serve -m <that uri> --env-manager uv"
        )
    elif outcome.source_run_id:
        lines.append(
            f"  logged to run {outcome.source_run_id} (onnx_* metrics, onnx_export/); no ONNX-backed MLflow model: "
            f"{outcome.not_served}"
        )
    return "\n".join(lines)
