"""MLflow "models from code" file: logged with the model, executed at load time to build the pyfunc."""

import warnings

import mlflow.models

from bertcls.serving.pyfunc import BertclsPyfunc

with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)  # "add type hints to predict": inputs are checked by our code
    model = BertclsPyfunc()
mlflow.models.set_model(model)
