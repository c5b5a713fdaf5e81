"""Serving: what a saved or logged model needs to answer (predictor, the input contract, the pyfunc)."""
