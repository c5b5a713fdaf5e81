"""Where models logged before the modules moved (issue 23) find their pyfunc class.

Each logged model carries the `pyfunc_model.py` of the bertcls that logged it; before the move that file said
`from bertcls.pyfunc import BertclsPyfunc`, and when MLflow loads such a model in a process where today's
bertcls is imported, this is the module it finds. New code imports `bertcls.serving.pyfunc`.
"""

from bertcls.serving.pyfunc import BertclsPyfunc

__all__ = ["BertclsPyfunc"]
