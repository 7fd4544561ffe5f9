"""The "models from code" file of the registered pyfunc: MLflow executes it to build the model.

The ``pipeline`` package beside it in the model (``code_paths``) provides the class.
"""

from mlflow.models import set_model

from pipeline.flavor import AccidentSeverityModel

set_model(AccidentSeverityModel())
