"""Open a local sqlite tracking store under a file lock, so concurrent jobs on a new store all start.

MLflow creates a new sqlite store's schema by running its migrations in the first process that opens
it; two processes doing that at once make one of them fail halfway through a migration. Holding an
exclusive lock beside the database while the schema (and the experiment) is created serialises them.
The lock is taken wherever a store is opened, whatever started the process: pyproject registers
`locked_tracking_store` and `locked_registry_store` as MLflow's store plugins for sqlite URIs, so the
launcher of `mlflow run` (which opens the store before any bertcls code runs), `mlflow ui` and our jobs
all wait for one another instead of migrating at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a sqlite:/// URI; None for any other store."""
    if not tracking_uri.startswith("sqlite:"):
        return None
    path = urlparse(tracking_uri).path
    return Path(path[1:] if path.startswith("//") else path) if path and path != "/:memory:" else None


_guard = threading.Lock()
_in_process: dict[str, threading.RLock] = {}  # database path -> the lock of this process's holders
_depth: dict[str, int] = {}


@contextlib.contextmanager
def store_lock(tracking_uri: str) -> Iterator[None]:
    """Exclusive lock on `<db>.lock` for a sqlite store; no-op for other stores. Re-entrant in a thread (the
    store plugin opens the store inside `ensure_store`'s lock); other threads of the process wait like other
    processes do."""
    database = sqlite_path(tracking_uri)
    if database is None:
        yield
        return
    key = str(database.absolute())
    with _guard:
        local = _in_process.setdefault(key, threading.RLock())
    with local:
        _depth[key] = _depth.get(key, 0) + 1
        try:
            if _depth[key] > 1:
                yield
                return
            database.parent.mkdir(parents=True, exist_ok=True)
            with open(f"{database}.lock", "a") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)
        finally:
            _depth[key] -= 1


def locked_tracking_store(store_uri: str, artifact_uri: str | None = None):
    """MLflow's tracking store for a sqlite URI, created under `store_lock` (the `mlflow.tracking_store` plugin
    for `sqlite`; every other database scheme stays MLflow's own)."""
    from mlflow.tracking._tracking_service import utils

    with store_lock(store_uri):
        return utils._get_sqlalchemy_store(store_uri, artifact_uri)


def locked_registry_store(store_uri: str):
    """MLflow's model-registry store for a sqlite URI, created under `store_lock` (its tables are migrated by
    whichever store opens a new database first)."""
    from mlflow.tracking._model_registry import utils

    with store_lock(store_uri):
        return utils._get_sqlalchemy_store(store_uri)


def ensure_store(experiment: str | None = None) -> None:
    """Open the tracking store once under the lock (creating its schema) and get-or-create `experiment`."""
    import mlflow
    from mlflow.exceptions import MlflowException

    uri = mlflow.get_tracking_uri()
    with store_lock(uri):
        client = mlflow.MlflowClient(uri)
        client.search_experiments(max_results=1)
        if experiment and client.get_experiment_by_name(experiment) is None:
            try:
                client.create_experiment(experiment)
            except MlflowException as err:  # a server store has no file lock: another job made it first
                if err.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise


# `python -m bertcls.tracking.store_lock [experiment]`: what `make train` runs before `mlflow run`.
if __name__ == "__main__":
    import sys

    # Through the imported module, not this `__main__` copy: MLflow's store plugin (this module, imported) must
    # see the lock as held by this thread, or it waits on it forever.
    from bertcls.tracking import store_lock as store

    store.ensure_store(sys.argv[1] if len(sys.argv) > 1 else None)
