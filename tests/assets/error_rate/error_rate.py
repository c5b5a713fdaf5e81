"""A local `evaluate` metric script (loads offline): the fraction of wrong predictions."""

import datasets
import evaluate


class ErrorRate(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="fraction of predictions that differ from the references",
            citation="",
            inputs_description="predictions, references: label ids",
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references):
        wrong = sum(int(p != r) for p, r in zip(predictions, references, strict=True))
        return {"error_rate": wrong / max(len(references), 1)}
