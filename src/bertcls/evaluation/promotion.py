"""Who holds @champion and @challenger: the promotion policy as pure functions over plain values.

`jobs.register` gathers the values from MLflow (registry.py), asks these functions, and applies the
answer. Rules: the first registered candidate becomes champion; afterwards a candidate must strictly
beat the champion on the compared metric (a tie does not), else it becomes challenger; `force` promotes
anyway; the same version again, or no training run since the champion, changes nothing.
"""

from __future__ import annotations

import dataclasses

from bertcls.data.tasks import is_better
from bertcls.errors import setting

CHAMPION, CHALLENGER = "champion", "challenger"
LOGGED, EVALUATED = "logged", "evaluated"


@dataclasses.dataclass(frozen=True)
class Entry:
    """A registered version and its figure on the compared metric."""

    version: str
    value: float


@dataclasses.dataclass(frozen=True)
class Decision:
    alias: str | None  # the alias the candidate should hold; None: nothing moves
    reason: str | None  # recorded in the alias history: "first champion", "beat the champion", ...
    message: str  # what `register` prints


def better(value: float, other: float, metric: str, direction: str | None = None) -> bool:
    """Strictly better in the metric's direction (bertcls.data.tasks.METRIC_DIRECTIONS, or `direction`)."""
    return is_better(value, other, metric, direction)


def below_baseline(
    run_id: str, metric: str, value: float, baseline: float | None, direction: str | None, force: bool
) -> Decision | None:
    """A candidate that does not beat always answering the majority class learned nothing: it is not registered
    (unless forced). None when it beats the baseline, or its run logged none (runs from before baselines)."""
    if force or beats_baseline(value, baseline, metric, direction):
        return None
    return Decision(
        None,
        None,
        f"Not registered: run {run_id}'s {metric} {value:.4f} does not beat the majority-class baseline of its data "
        f"({baseline:.4f}: always answering the most frequent training label), so it has learned nothing to promote. "
        f"Train longer or with another lr, or pass {setting('force', 'true')} to register it anyway.",
    )


def beats_baseline(value: float, baseline: float | None, metric: str, direction: str | None) -> bool:
    """Whether the candidate beats always answering the majority class (a run without a baseline: assumed to)."""
    return baseline is None or better(value, baseline, metric, direction)


def comparison_basis(same_data_and_split: bool, champion_logged_the_metric: bool) -> str:
    """Compare logged figures only when both runs measured the same examples; otherwise evaluate both."""
    return LOGGED if same_data_and_split and champion_logged_the_metric else EVALUATED


def no_new_run(champion_version: str, experiment: str) -> Decision:
    return Decision(
        None,
        None,
        f"Nothing changed: no training run in {experiment!r} finished since champion version "
        f"{champion_version} was registered. Train a new run, or pass {setting('run_id', '<id>')} to register "
        "one.",
    )


def without_comparison(
    candidate: Entry, champion_version: str | None, metric: str, below_baseline: bool = False
) -> Decision | None:
    """The cases decided before any figure is compared: no champion yet, or the candidate already is one.
    `below_baseline`: the candidate does not beat the majority-class baseline and was forced in (so recorded)."""
    if champion_version is None:
        reason = "forced below the baseline" if below_baseline else "first champion"
        return Decision(
            CHAMPION,
            reason,
            f"version {candidate.version} is the first champion ({metric} = {candidate.value:.4f}"
            + (", forced: it does not beat the majority-class baseline)" if below_baseline else ")"),
        )
    if champion_version == candidate.version:
        return Decision(None, None, f"Nothing changed: version {candidate.version} is already champion.")
    return None


def after_comparison(
    candidate: Entry, champion: Entry, metric: str, basis: str, force: bool, direction: str | None = None
) -> Decision:
    """Champion if the candidate strictly beats the champion (or `force`), else challenger."""
    wins = better(candidate.value, champion.value, metric, direction)
    if wins or force:
        reason = "beat the champion" if wins else "forced"
        return Decision(
            CHAMPION,
            reason,
            f"version {candidate.version} is the new champion ({reason}: {metric} {candidate.value:.4f} "
            f"vs {champion.value:.4f} of version {champion.version}, {basis})",
        )
    return Decision(
        CHALLENGER,
        "did not beat the champion",
        f"version {candidate.version} is challenger: {metric} {candidate.value:.4f} does not beat champion "
        f"version {champion.version} ({champion.value:.4f}, {basis}); pass force=true to promote anyway",
    )
