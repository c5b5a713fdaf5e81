"""The MLflow pyfunc flavour: `mlflow.pyfunc.load_model(uri).predict(texts)` -> labels and probabilities.

Input: a DataFrame with a `text` column (and `text_pair` for pair tasks), a list of strings, or a Series.
Output: a DataFrame with `label` then one `prob_<label>` column per class in label order; for
regression a single `score` column.
"""

from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd

from bertcls.predict import Predictor, softmax

MODEL_ARTIFACT = "bertcls_model"


def _texts(model_input) -> "tuple[list[str], list[str] | None]":
    if isinstance(model_input, pd.DataFrame):
        if "text" not in model_input.columns:
            if model_input.shape[1] == 1:
                return [str(t) for t in model_input.iloc[:, 0]], None
            raise ValueError(
                f"Input DataFrame needs a 'text' column; it has {', '.join(map(str, model_input.columns))}."
            )
        pairs = [str(t) for t in model_input["text_pair"]] if "text_pair" in model_input.columns else None
        return [str(t) for t in model_input["text"]], pairs
    if isinstance(model_input, str):
        return [model_input], None
    if isinstance(model_input, dict):
        return _texts(pd.DataFrame(model_input))
    return [str(t) for t in np.asarray(model_input).reshape(-1)], None


def predictions_frame(predictor: Predictor, outputs: np.ndarray) -> pd.DataFrame:
    """Model outputs -> the documented output DataFrame."""
    if predictor.is_regression:
        return pd.DataFrame({"score": outputs[:, 0].astype(np.float64)})
    probs = softmax(outputs.astype(np.float64))
    frame = pd.DataFrame({"label": [predictor.label_names[i] for i in probs.argmax(axis=-1)]})
    for i, name in enumerate(predictor.label_names):
        frame[f"prob_{name}"] = probs[:, i]
    return frame


class BertclsPyfunc(mlflow.pyfunc.PythonModel):
    """Loads our saved weights + tokenizer from the model's artifacts and predicts in length buckets."""

    def load_context(self, context) -> None:
        self.predictor = Predictor.from_dir(Path(context.artifacts[MODEL_ARTIFACT]))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        # mlflow enforces the signature first, so a list of strings arrives here as a one-column DataFrame
        texts, pairs = _texts(model_input)
        if self.predictor.has_text_pair and pairs is None:
            raise ValueError("This model was trained on sentence pairs: pass a DataFrame with text and text_pair.")
        return predictions_frame(self.predictor, self.predictor.predict(texts, pairs))
