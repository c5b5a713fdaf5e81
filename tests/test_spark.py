"""Scoring at scale: `mlflow.pyfunc.spark_udf` over a bertcls model on a real local Spark session (pyspark and
Debian's Java runtime, installed by `make setup` / `make system-deps`); skipped with the reason where either is
missing."""

from __future__ import annotations

import importlib.util
import shutil
import sys

import mlflow
import numpy as np
import pandas as pd
import pytest

from tests import e2e

pytestmark = [
    pytest.mark.slow,
    pytest.mark.xdist_group("spark"),
    pytest.mark.skipif(shutil.which("java") is None, reason="no Java runtime (make system-deps installs one)"),
    pytest.mark.skipif(importlib.util.find_spec("pyspark") is None, reason="pyspark is not installed (make setup)"),
]


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    from pyspark.sql import SparkSession

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYSPARK_PYTHON", sys.executable)  # the workers import bertcls from this venv
        patch.setenv("PYSPARK_DRIVER_PYTHON", sys.executable)
        session = (
            SparkSession.builder.master("local[2]")
            .appName("bertcls-test")
            .config("spark.ui.enabled", "false")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.local.dir", str(tmp_path_factory.mktemp("spark-local")))
            .getOrCreate()
        )
        yield session
        session.stop()


@pytest.fixture(scope="module")
def model_uri(tmp_path_factory, small_model_dir):
    with e2e.store_with_untrained_model(tmp_path_factory.mktemp("spark-model"), small_model_dir, "spark") as found:
        yield found[2]


def test_spark_udf_scores_a_few_hundred_rows_as_the_pyfunc_does(spark, model_uri):
    from pyspark.sql import functions as F

    texts = [f"{word} number {i}: call now to claim your prize" for i, word in enumerate(["win", "hi"] * 150)]
    frame = spark.createDataFrame(pd.DataFrame({"id": np.arange(300), "text": texts})).repartition(3)
    udf = mlflow.pyfunc.spark_udf(spark, model_uri, env_manager="local")  # the result type from the signature
    scored = frame.withColumn("answer", udf(F.struct("text"))).select("id", "answer.*").toPandas()
    scored = scored.sort_values("id").reset_index(drop=True)
    assert len(scored) == 300 and list(scored.columns) == ["id", "label", "prob_ham", "prob_spam"]
    expected = mlflow.pyfunc.load_model(model_uri).predict(texts)
    np.testing.assert_allclose(scored["prob_spam"], expected["prob_spam"], atol=1e-5)
    assert scored["label"].tolist() == expected["label"].tolist()


def test_bare_columns_get_the_struct_hint(spark, model_uri):
    udf = mlflow.pyfunc.spark_udf(spark, model_uri, env_manager="local")
    frame = spark.createDataFrame(pd.DataFrame({"text": ["free entry"]}))
    with pytest.raises(Exception, match=r"call it on a struct, udf\(struct\('text'\)\)"):
        frame.withColumn("answer", udf("text")).collect()
