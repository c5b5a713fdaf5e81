"""MLflow "models from code" file of the ONNX-backed model: executed at load time to build the pyfunc."""

import warnings

import mlflow.models

from bertcls.serving.onnx_pyfunc import OnnxPyfunc

with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)  # "add type hints to predict": inputs are checked by our code
    model = OnnxPyfunc()
mlflow.models.set_model(model)
