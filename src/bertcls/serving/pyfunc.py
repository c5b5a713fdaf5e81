"""The MLflow pyfunc flavour: `mlflow.pyfunc.load_model(uri).predict(texts)` -> labels and probabilities.

Input: what `bertcls.serving.inputs.read_texts` accepts (a list of strings, or a DataFrame with a `text` column
and, for pair tasks, `text_pair`), checked by our code: the logged signature declares outputs only, so
MLflow passes inputs through unchanged instead of feeding an unnamed first column. Bad input raises an
MlflowException with INVALID_PARAMETER_VALUE (HTTP 400 when served) naming what was expected.
Output: a DataFrame with `label` then one `prob_<label>` column per class in label order, calibrated by the
temperature fitted after training (the model's own with the param `calibrated=false`); for regression a single
`score` column. A multi-label classifier answers `labels` (the label set) and `prob_<label>` per label; the
param `threshold` replaces every label's tuned threshold with one number. A word tagger (task=ner) takes texts
or pre-split words (`tokens`) and
answers an `entities` column (type, text, start, end, score per entity; `bertcls.serving.tagging`), and with
the param `return_tags=true` the `words` and their `tags`; the param `tag_decoding` (viterbi, argmax) replaces the
decoding the model was trained with.
"""

from pathlib import Path

import mlflow.pyfunc
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from bertcls.config.training import TAG_DECODINGS
from bertcls.errors import InputError
from bertcls.serving.inputs import read_tagging_input, read_texts
from bertcls.serving.predictor import Predictor, predictions_frame
from bertcls.serving.pyfunc_params import choice_param, flag, threshold_param
from bertcls.serving.tagging import entities_frame

MODEL_ARTIFACT = "bertcls_model"


class BertclsPyfunc(mlflow.pyfunc.PythonModel):
    """Loads our saved weights + tokenizer from the model's artifacts and predicts in length buckets."""

    def load_context(self, context) -> None:
        self.predictor = Predictor.from_dir(Path(context.artifacts[MODEL_ARTIFACT]))

    def predict(self, context, model_input, params=None):  # no type hints: MLflow would convert the input
        try:
            if self.predictor.is_tagger:
                texts, sentences = read_tagging_input(model_input)
            else:
                texts, pairs = read_texts(model_input, self.predictor.has_text_pair)
        except InputError as err:
            raise MlflowException(str(err), error_code=INVALID_PARAMETER_VALUE) from None
        params = params or {}
        if self.predictor.is_tagger:
            decoding = choice_param(params, "tag_decoding", TAG_DECODINGS, self.predictor.settings.tag_decoding)
            return entities_frame(self.predictor, texts, sentences, flag(params, "return_tags", False), decoding)
        outputs = self.predictor.predict(texts, pairs)
        threshold = threshold_param(params) if self.predictor.is_multilabel else None
        return predictions_frame(self.predictor, outputs, flag(params, "calibrated", True), threshold)
