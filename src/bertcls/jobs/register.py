"""The register job: the best new run's model into the registry; @champion moves only if it wins."""

from __future__ import annotations

import dataclasses
import re

from bertcls.data.tasks import metric_direction
from bertcls.evaluation import promotion
from bertcls.jobs.evaluate import evaluate
from bertcls.tracking import registry


@dataclasses.dataclass
class RegisterOutcome:
    name: str
    version: str | None
    created: bool
    alias: str | None  # the alias the candidate now holds (champion / challenger), None if nothing changed
    message: str
    task: str = ""  # the registered run's `task` tag (classification, ner, ...): what input its model takes


def _evaluated_values(name: str, candidate_version, champion_version, candidate, metric_key: str, experiment: str):
    """Evaluate both versions on the candidate's dataset and split; returns (candidate, champion) values."""
    split = "validation" if metric_key.startswith("best_val_") else "test"
    metric = metric_key.removeprefix("best_val_").removeprefix("test_")
    overrides = dataclasses.asdict(candidate.config.data)  # the candidate's dataset and split recipe
    values = []
    for version in (candidate_version, champion_version):
        outcome = evaluate(  # its own run: never the one `mlflow run -e register` made for this job
            f"models:/{name}/{version.version}",
            split=split,
            data_overrides=overrides,
            experiment=experiment,
            fresh_run=True,
        )
        values.append(outcome.metrics[f"{split}_{metric}"])
    return values[0], values[1], f"{split}_{metric}"


def register(
    experiment: str,
    metric: str | None = None,
    name: str | None = None,
    force: bool = False,
    dataset: str | None = None,
    run_id: str | None = None,
    direction: str | None = None,
) -> RegisterOutcome:
    """Register the best new run's model; @champion moves only if it beats the current champion.

    The decisions are `bertcls.evaluation.promotion`'s; this function gathers their inputs and applies them. `metric`
    None ranks by the runs' primary metric; `direction` (max/min) ranks a metric bertcls does not know (it never
    guesses).
    """

    if name is not None:
        registry.check_model_name(name)
    client = registry.client()
    registry.tag_job_run(client, "register")  # under `mlflow run`: this run must never be a candidate
    if run_id:
        candidate = registry.candidate_from_run(client, run_id, metric)
    else:
        candidate = registry.best_run(client, experiment, metric, dataset, direction=direction)
    direction = metric_direction(candidate.metric_key, direction)  # an unknown metric is refused before any write
    metric = candidate.metric_key  # newer runs compete on the metric the candidate was picked by
    name = name or "bertcls-" + re.sub(r"[^A-Za-z0-9_.-]+", "_", candidate.dataset or "model")
    champion = registry.current_alias(client, name, promotion.CHAMPION)
    if champion is not None and not run_id:
        since, on = champion.creation_timestamp, dataset or candidate.dataset  # newer runs on the same data only
        newer = registry.best_run(
            client, experiment, metric, on, finished_after=since, missing_ok=True, direction=direction
        )
        if newer is None:
            decision = promotion.no_new_run(champion.version, experiment)
            return RegisterOutcome(name, champion.version, False, None, decision.message)
        candidate = newer
    baseline = registry.baseline_value(client, candidate)
    refusal = promotion.below_baseline(
        candidate.run_id, candidate.metric_key, candidate.value, baseline, direction, force
    )
    if refusal is not None:
        return RegisterOutcome(name, None, False, None, refusal.message)
    version, created = registry.register_run(client, name, candidate)
    values = {"metric": candidate.metric_key, "candidate_run": candidate.run_id, "candidate_value": candidate.value}
    entry = promotion.Entry(version.version, candidate.value)

    below = not promotion.beats_baseline(candidate.value, baseline, candidate.metric_key, direction)
    decision = promotion.without_comparison(
        entry, champion.version if champion else None, candidate.metric_key, below_baseline=below
    )
    if decision is None:
        decision = _compare_with_champion(
            client, name, version, champion, candidate, experiment, force, direction, values
        )
    return RegisterOutcome(
        name,
        version.version,
        created,
        _apply(client, name, decision, version, champion, values),
        decision.message,
        candidate.task,
    )


def _compare_with_champion(
    client, name: str, version, champion, candidate, experiment: str, force: bool, direction: str, values: dict
):
    """The decision between the new version and @champion: on the metric both runs logged when their data is
    comparable, else on both evaluated on the candidate's dataset and split. `values` records what was compared."""
    champion_run = registry.get_run(client, champion.run_id)
    basis = promotion.comparison_basis(
        registry.comparable(candidate.config.data, registry.run_train_config(champion_run).data),
        candidate.metric_key in champion_run.data.metrics,
    )
    if basis == promotion.LOGGED:
        mine, theirs = candidate.value, champion_run.data.metrics[candidate.metric_key]
        compared = candidate.metric_key
    else:  # different data or split: evaluate both on the candidate's dataset and split
        mine, theirs, compared = _evaluated_values(name, version, champion, candidate, candidate.metric_key, experiment)
    values.update(compared=compared, candidate_value=mine, champion_value=theirs, basis=basis)
    mine_entry, theirs_entry = promotion.Entry(version.version, mine), promotion.Entry(champion.version, theirs)
    return promotion.after_comparison(mine_entry, theirs_entry, compared, basis, force, direction)


def _apply(client, name: str, decision, version, champion, values: dict) -> str | None:
    """Move the alias the decision names (recording why); returns the alias the version now holds."""
    if decision.alias is None:
        return None
    previous = (
        champion if decision.alias == promotion.CHAMPION else registry.current_alias(client, name, decision.alias)
    )
    moved = registry.move_alias(client, name, decision.alias, version, previous, decision.reason, values)
    return decision.alias if moved or decision.alias == promotion.CHAMPION else None
