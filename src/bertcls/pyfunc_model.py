"""MLflow "models from code" file: logged with the model, executed at load time to build the pyfunc."""

import mlflow.models

from bertcls.pyfunc import BertclsPyfunc

mlflow.models.set_model(BertclsPyfunc())
