"""bertcls: fine-tune BERT-family encoders for text classification with JAX/Flax NNX, tracked in MLflow.

The library needs no MLflow (docs/library.md):

    import bertcls
    tuned = bertcls.fine_tune(bertcls.TrainConfig(data=bertcls.DataConfig(dataset="sms_spam"), epochs=1))
    print(tuned.metrics["best_val_mcc"], tuned.metrics["test_accuracy"])
    tuned.save("spam-model")
    print(bertcls.load("spam-model").predict_frame(["WINNER!! claim your prize now"]))

The jobs (`bertcls train`, `mlflow run . -e train`) are the same fine-tuning plus tracking. Names resolve on
first use, so importing bertcls (as MLflow's store plugin does) loads neither jax nor the data stack.
"""

__version__ = "0.1.0"
__all__ = ["DataConfig", "FineTuned", "OptimConfig", "Predictor", "TrainConfig", "fine_tune", "load"]


def __getattr__(name: str):
    if name in ("fine_tune", "FineTuned"):
        from bertcls.train import fine_tune as home
    elif name in ("DataConfig", "OptimConfig", "TrainConfig"):
        from bertcls import config as home
    elif name in ("load", "Predictor"):
        from bertcls.serving import predictor as home
    else:
        raise AttributeError(f"module 'bertcls' has no attribute {name!r}")
    return getattr(home, name)
