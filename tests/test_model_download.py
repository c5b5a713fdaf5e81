"""A model URI is downloaded once into the bertcls cache and reused: evaluate, predict, export and distill of the
same model no longer leave a fresh copy of its weights in the temp folder on every call."""

from __future__ import annotations

import os
import tempfile

import mlflow
from mlflow import MlflowClient

from bertcls.paths import cache_root
from bertcls.tracking.registry import DOWNLOAD_RECORD, resolve_model_uri
from tests import e2e


def _entries(folder) -> set[str]:
    return set(os.listdir(folder))


def _copy_of(local_dir):
    """The cache folder (`$BERTCLS_CACHE/models/<key>`) a resolved model directory lies in."""
    while local_dir.parent != cache_root("models"):
        local_dir = local_dir.parent
    return local_dir


def test_each_model_is_downloaded_once_and_nothing_is_left_in_the_temp_folder(empty_store, small_model_dir, tmp_path):
    mlflow.set_experiment("model-download")  # not whatever experiment an earlier test of this worker left active
    logged = e2e.log_untrained_model(tmp_path / "first", small_model_dir, pairs=False)
    run_id = MlflowClient().get_logged_model(logged.removeprefix("models:/")).source_run_id
    mlflow.register_model(logged, "download-check")
    MlflowClient().set_registered_model_alias("download-check", "champion", "1")
    temp_before = _entries(tempfile.gettempdir())

    uris = [f"runs:/{run_id}/model", logged, "models:/download-check/1", "models:/download-check@champion"]
    first = [resolve_model_uri(uri) for uri in uris]
    for ref in first:
        assert (ref.local_dir / "bertcls_config.json").is_file() and ref.source_run_id == run_id
    # other tests share the session's cache: look only at the copies these URIs resolved to
    copies = [_copy_of(ref.local_dir) for ref in first]
    records = {copy: (copy / DOWNLOAD_RECORD).stat().st_mtime_ns for copy in copies}
    # the alias and the version it points at are one copy; the run's and the logged model's URIs one each
    assert first[2].local_dir == first[3].local_dir and len(set(copies)) == 3
    again = [resolve_model_uri(uri).local_dir for uri in uris]
    assert again == [ref.local_dir for ref in first]
    assert {c: (c / DOWNLOAD_RECORD).stat().st_mtime_ns for c in copies} == records  # nothing downloaded again
    assert not [p for p in _entries(cache_root("models")) if any(p.startswith(f".{c.name}.") for c in copies)]
    assert _entries(tempfile.gettempdir()) <= temp_before  # MLflow's temporary download folders are not used

    # the alias moves to version 2: resolved again, it is the new version's files, not the cached old ones
    second = e2e.log_untrained_model(tmp_path / "second", small_model_dir, pairs=False)
    mlflow.register_model(second, "download-check")
    MlflowClient().set_registered_model_alias("download-check", "champion", "2")
    moved = resolve_model_uri("models:/download-check@champion")
    assert str(moved.version) == "2" and moved.local_dir != first[3].local_dir
    assert moved.source_run_id != run_id


def test_a_copy_without_its_record_is_downloaded_again(empty_store, small_model_dir, tmp_path):
    mlflow.set_experiment("model-download")
    logged = e2e.log_untrained_model(tmp_path / "model", small_model_dir, pairs=False)
    ref = resolve_model_uri(logged)
    copy = _copy_of(ref.local_dir)
    (copy / DOWNLOAD_RECORD).unlink()  # a folder without the record (emptied by hand, say) is not a copy
    (ref.local_dir / "bertcls_config.json").unlink()
    again = resolve_model_uri(logged)
    assert again.local_dir == ref.local_dir and (again.local_dir / "bertcls_config.json").is_file()
    assert (copy / DOWNLOAD_RECORD).is_file()
