"""The ONNX-backed MLflow pyfunc: the same input contract and answers as the JAX model, run by ONNX Runtime.

A model logged this way ships only `bertcls.errors` and these `bertcls.serving` modules (inputs, decisions,
onnx_runtime, pyfunc_params, this one) and requires mlflow, onnxruntime, tokenizers, numpy and pandas: no JAX,
Flax or transformers, so `mlflow models serve --env-manager uv` builds a small environment.
"""

from pathlib import Path

import mlflow.pyfunc
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from bertcls.errors import InputError
from bertcls.serving.inputs import read_texts
from bertcls.serving.onnx_runtime import OnnxPredictor
from bertcls.serving.pyfunc_params import flag, threshold_param

ONNX_ARTIFACT = "onnx_model"  # the artifact holding the export directory
GRAPH_KEY = "graph"  # model_config key: which graph file of it to run (model.onnx or model.int8.onnx)


class OnnxPyfunc(mlflow.pyfunc.PythonModel):
    """Loads an ONNX export and answers texts as the JAX model does."""

    def load_context(self, context) -> None:
        graph = (context.model_config or {}).get(GRAPH_KEY, "model.onnx")
        self.predictor = OnnxPredictor(Path(context.artifacts[ONNX_ARTIFACT]), graph)

    def predict(self, context, model_input, params=None):  # no type hints: MLflow would convert the input
        try:
            texts, pairs = read_texts(model_input, self.predictor.has_text_pair)
        except InputError as err:
            raise MlflowException(str(err), error_code=INVALID_PARAMETER_VALUE) from None
        params = params or {}
        threshold = threshold_param(params) if self.predictor.is_multilabel else None
        return self.predictor.frame(texts, pairs, flag(params, "calibrated", True), threshold)
