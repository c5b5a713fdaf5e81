"""The search over train parameters as an Optuna study: sampler, pruner and storage, and which trial runs
next, exactly once across every worker that shares the storage.

Optuna does the searching (GridSampler, TPESampler), the pruning (MedianPruner) and the bookkeeping (an RDB
storage many machines share, heartbeats, retries of trials whose worker died). What is ours: reading the
sweep's lists and ranges (`bertcls.sweep.parameters`), and the rule that keeps a grid point from running
twice. GridSampler gives grid point k to trial number k for k < grid size and a free point to later numbers,
a retry copy keeps its trial's point, and trial numbers are unique in the storage; so the first `budget`
trials that are not retries hold exactly the grid, and one beyond them is surplus (a worker asked while
another took the last point) and is ended at once, untrained. Every trial records the process that trains
it, so a worker on the same host sees a killed trial's process gone at once (another host's, after GRACE_S
without a heartbeat); a worker never finishes while a point is still running elsewhere. No mlflow here.
"""

from __future__ import annotations

import re
import socket
import threading

from bertcls.errors import StorageError
from bertcls.runtime import liveness
from bertcls.sweep.parameters import SearchSpace

RETRY_MARK = "failed_trial"  # system attr Optuna's retry callback puts on a retried trial
OWNER = "owner"  # system attr: host, pid and process start of the process training the trial
SURPLUS = "surplus"  # user attr of a trial ended untrained (see the module docstring)
HEARTBEAT_S, GRACE_S = 20, 60  # a RUNNING trial silent for GRACE_S is stale: failed, and retried once


def default_storage(tracking_uri: str) -> str:
    """optuna.db beside a sqlite tracking store (./optuna.db for any other store)."""
    prefix = "sqlite:///"
    if tracking_uri.startswith(prefix):
        from pathlib import Path

        return prefix + str(Path(tracking_uri[len(prefix) :]).with_name("optuna.db"))
    return "sqlite:///optuna.db"


def open_storage(storage_url: str):
    """Optuna's RDB storage (heartbeats on, dead workers' trials retried); a clear error if unreachable."""
    import time

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for attempt in range(6):
        try:
            return _quietly(
                lambda: optuna.storages.RDBStorage(
                    storage_url,
                    heartbeat_interval=HEARTBEAT_S,
                    grace_period=GRACE_S,
                    heartbeat_stale_trial_callback=retry_callback(),
                    engine_kwargs={"pool_pre_ping": True},
                )
            )
        except Exception as err:  # SQLAlchemy's connection errors, a bad URL, a missing driver
            # Workers starting together both create Optuna's tables: the loser sees them appear; try again.
            if attempt == 5 or not re.search(r"duplicate key|already exists", str(err)):
                raise _unreachable(storage_url, err) from None
            time.sleep(0.5 + attempt)


def _unreachable(storage_url: str, err: Exception) -> StorageError:
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return StorageError(
        f"Cannot open the Optuna storage {redacted(storage_url)}: {first}. Give a reachable database URL "
        "(sqlite:///path/optuna.db, or postgresql://user:password@host:5432/db with the server running)."
    )


def open_study(storage, name: str, space: SearchSpace, direction: str, pruner: str, seed: int):
    """Create or load the study (load_if_exists: every worker and every re-run joins the same one)."""
    import optuna

    if space.is_grid:
        sampler = _GridSampler({k: list(v) for k, v in space.choices.items()}, seed=seed)
    else:
        sampler = optuna.samplers.TPESampler(seed=seed)
    pruning = (
        optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
        if pruner == "median"
        else optuna.pruners.NopPruner()
    )
    direction = "maximize" if direction == "max" else "minimize"
    return optuna.create_study(
        storage=storage, study_name=name, sampler=sampler, pruner=pruning, direction=direction, load_if_exists=True
    )


def _grid_sampler_class():
    import optuna

    class GridSampler(optuna.samplers.GridSampler):
        """Optuna's grid sampler, without its `study.stop()` once the grid is done: that call is for
        `study.optimize`; our ask/tell loop stops by `remaining()`."""

        def after_trial(self, study, trial, state, values) -> None:
            return None

    return GridSampler


def _GridSampler(*args, **kwargs):  # noqa: N802 - a class built on first use (optuna is imported lazily)
    return _grid_sampler_class()(*args, **kwargs)


def redacted(url: str) -> str:
    """A storage URL without its password."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def _quietly(call, *args):
    """Optuna warns that heartbeats are meant for `study.optimize` and that fail_stale_trials is experimental;
    this ask/tell loop records heartbeats itself (Heartbeat), so those warnings say nothing here."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return call(*args)


def claim(study, trial) -> None:
    """Record this process as the trial's owner (host, pid, process start)."""
    owner = {key: value for key, value in liveness.process_tags().items() if key != liveness.HEARTBEAT}
    study._storage.set_trial_system_attr(trial._trial_id, OWNER, owner)


def owner_of(trial) -> str:
    """`host:pid` of the process training the trial, or '?' for a trial without an owner."""
    owner = trial.system_attrs.get(OWNER) or {}
    return f"{owner.get(liveness.HOST, '?')}:{owner.get(liveness.PID, '?')}"


def _owner_gone(trial, this_host: str) -> bool:
    owner = trial.system_attrs.get(OWNER) or {}
    pid = str(owner.get(liveness.PID, ""))
    if owner.get(liveness.HOST) != this_host or not pid.isdigit():
        return False
    return not liveness.process_alive(int(pid), owner.get(liveness.PROCESS_START) or None)


def fail_stale(study) -> list[tuple[int, str]]:
    """A dead worker's RUNNING trial: FAIL, and a retry copy of it waits. On this host a trial whose process is gone
    fails at once; on others after GRACE_S without a heartbeat (Optuna's bookkeeping). Returns (number, why) of
    each trial this call failed, so the caller can end its MLflow run too."""
    import optuna
    from optuna.trial import TrialState

    storage, host = study._storage, socket.gethostname()
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    failed = []
    for trial in running:
        if _owner_gone(trial, host):
            reason = f"its process {owner_of(trial).split(':', 1)[1]} on {host} is gone"
            try:
                if storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
                    failed.append((trial.number, reason))
                    retry_callback()(study, storage.get_trial(trial._trial_id))
            except optuna.exceptions.UpdateFinishedTrialError:
                pass  # another worker ended it first
    _quietly(optuna.storages.fail_stale_trials, study)
    gone = {number for number, _ in failed}
    for trial in running:
        if trial.number not in gone and storage.get_trial(trial._trial_id).state == TrialState.FAIL:
            failed.append((trial.number, f"no heartbeat for {GRACE_S} s (its process {owner_of(trial)})"))
    return failed


def running_elsewhere(study) -> list:
    """Trials another live process is training now (surplus trials aside): a sweep is not done while one runs."""
    from optuna.trial import TrialState

    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    return [t for t in running if not t.user_attrs.get(SURPLUS)]


def ask(study):
    return _quietly(study.ask)


def retry_callback():
    """Optuna's: a copy of the failed trial (same params, same grid point) waits for the next worker."""
    import optuna

    return _quietly(optuna.storages.RetryHeartbeatStaleTrialCallback, 2)


def system_attrs(study, trial) -> dict:
    return study._storage.get_trial(trial._trial_id).system_attrs


def remaining(study, space: SearchSpace) -> bool:
    """Whether this worker should ask for another trial: the budget is not used up, or a retry waits."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    originals = [t for t in trials if RETRY_MARK not in t.system_attrs]
    return len(originals) < space.budget or any(t.state == TrialState.WAITING for t in trials)


def is_surplus(trial, space: SearchSpace) -> bool:
    """A trial that is not a retry, asked when `budget` such trials came before it: another worker took the last
    point meanwhile. (Counting trials, not trial numbers: a retry copy takes a number but keeps its old point.)"""
    if RETRY_MARK in system_attrs(trial.study, trial):
        return False
    earlier = [t for t in trial.study.get_trials(deepcopy=False) if t.number < trial.number]
    return sum(RETRY_MARK not in t.system_attrs for t in earlier) >= space.budget


class Heartbeat:
    """Records the running trial's heartbeat every HEARTBEAT_S seconds (Optuna does this only inside
    `study.optimize`); a worker that dies stops beating and its trial is retried by the next worker."""

    def __init__(self, study, trial, also=None):
        self.storage, self.trial_id, self.also = study._storage, trial._trial_id, also
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while not self.stop.is_set():
            self.storage.record_heartbeat(self.trial_id)
            if self.also is not None:
                self.also()  # the sweep run's own heartbeat (its `runs --stale` verdict from other hosts)
            self.stop.wait(HEARTBEAT_S)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


class PruningCallback:
    """fit() callback: reports the epoch's validation metric to the trial; asks fit to stop when the
    pruner says the trial is hopeless."""

    def __init__(self, trial, metric: str):
        self.trial, self.key = trial, f"val_{metric}"
        self.stop_training = False
        self.pruned_at: int | None = None

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        self.trial.report(metrics[self.key], epoch)
        if self.trial.should_prune():
            self.stop_training, self.pruned_at = True, epoch
