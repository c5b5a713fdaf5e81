"""`bertcls.fine_tune`: the whole fine-tuning as a library call, in a fresh Python process with no tracking store.

What a notebook user does (docs/library.md): fine-tune, read the metrics, save, load, predict. MLflow must not
be imported at all (not merely unused), nothing may be written where the user stands, and the saved model must
answer the test texts exactly as the fine-tuned one did.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from tests.e2e import subprocess_env

NOTEBOOK = """
import json, sys
import numpy as np
import bertcls

config = bertcls.TrainConfig(
    model={model!r},
    data=bertcls.DataConfig(train_file={csv!r}, max_seq_length=32, max_buckets=1),
    epochs=2, batch_size=16, eval_batch_size=16, log_checkpoints="none",
)
epochs = []
class Record:
    def on_epoch_end(self, epoch, metrics):
        epochs.append(epoch)
tuned = bertcls.fine_tune(config, callbacks=[Record()], progress_bar=False)
tuned.save({saved!r})
texts = list(tuned.setup.data.texts["test"]["text"])
frame = bertcls.load({saved!r}).predict_frame(texts)
logits = tuned.test.outputs.astype(np.float64)
print(json.dumps({{
    "metrics": tuned.metrics, "epochs": epochs, "labels": list(tuned.setup.data.task.label_names),
    "logits": logits.tolist(), "test_labels": tuned.test.labels.tolist(),
    "probs": frame[["prob_ham", "prob_spam"]].to_numpy().tolist(),
    "mlflow_loaded": sorted(m for m in sys.modules if m == "mlflow" or m.startswith("mlflow.")),
}}))
"""


def test_fine_tune_in_a_fresh_process_needs_no_mlflow_and_its_saved_model_answers_the_same(
    small_model_dir, sms_csv, tmp_path
):
    workdir = tmp_path / "notebook"
    workdir.mkdir()
    saved = tmp_path / "spam-model"
    code = NOTEBOOK.format(model=str(small_model_dir), csv=str(sms_csv), saved=str(saved))
    env = subprocess_env()  # no MLFLOW_* variable at all
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=workdir, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])

    assert out["mlflow_loaded"] == []
    assert list(workdir.iterdir()) == []  # no mlflow.db, no mlruns/: nothing tracked
    assert out["epochs"] == [1, 2] and out["labels"] == ["ham", "spam"]
    metrics = out["metrics"]
    assert metrics["best_epoch"] in (1.0, 2.0)
    for key in ("best_val_accuracy", "best_val_mcc", "best_val_loss", "test_accuracy", "baseline_val_accuracy"):
        assert np.isfinite(metrics[key]), key
    logits = np.asarray(out["logits"])  # [T, 2], the fine-tuned model on the test split
    expected = np.exp(logits - logits.max(-1, keepdims=True))
    expected /= expected.sum(-1, keepdims=True)
    np.testing.assert_allclose(np.asarray(out["probs"]), expected, rtol=0, atol=1e-5)
    answered = np.asarray(out["probs"]).argmax(-1)  # the saved model's answers, scored like the run's test_accuracy
    assert np.mean(answered == np.asarray(out["test_labels"])) == metrics["test_accuracy"]
    assert (saved / "model.safetensors").is_file() and (saved / "tokenizer.json").is_file()
