"""Create a local sqlite tracking store (and an experiment) under a file lock, so concurrent jobs can start.

MLflow creates a new sqlite store's schema by running its migrations in the first process that opens
it; two processes doing that at once make one of them fail halfway through a migration. Holding an
exclusive lock beside the database while the schema (and the experiment) is created serialises them.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a sqlite:/// URI; None for any other store."""
    if not tracking_uri.startswith("sqlite:"):
        return None
    path = urlparse(tracking_uri).path
    return Path(path[1:] if path.startswith("//") else path) if path and path != "/:memory:" else None


@contextlib.contextmanager
def store_lock(tracking_uri: str) -> Iterator[None]:
    """Exclusive lock on `<db>.lock` for a sqlite store; no-op for other stores."""
    database = sqlite_path(tracking_uri)
    if database is None:
        yield
        return
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{database}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


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


if __name__ == "__main__":  # `python -m bertcls.store [experiment]`: what `make train` runs before `mlflow run`
    import sys

    ensure_store(sys.argv[1] if len(sys.argv) > 1 else None)
