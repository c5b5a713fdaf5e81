"""The promotion policy over plain values: milliseconds each, no MLflow store."""

from __future__ import annotations

import pytest

from bertcls.evaluation.promotion import (
    CHALLENGER,
    CHAMPION,
    EVALUATED,
    LOGGED,
    Entry,
    after_comparison,
    better,
    comparison_basis,
    no_new_run,
    without_comparison,
)


def test_first_candidate_becomes_champion():
    decision = without_comparison(Entry("1", 0.91), None, "best_val_mcc")
    assert (decision.alias, decision.reason) == (CHAMPION, "first champion")
    assert decision.message == "version 1 is the first champion (best_val_mcc = 0.9100)"


def test_a_first_champion_forced_below_the_baseline_says_so_in_its_history():
    decision = without_comparison(Entry("1", 0.09), None, "best_val_micro_f1", below_baseline=True)
    assert (decision.alias, decision.reason) == (CHAMPION, "forced below the baseline")
    assert "forced: it does not beat the majority-class baseline" in decision.message


def test_the_champion_registered_again_changes_nothing():
    decision = without_comparison(Entry("3", 0.91), "3", "best_val_mcc")
    assert decision.alias is None and decision.message.startswith("Nothing changed: version 3 is already champion")


def test_another_version_needs_a_comparison():
    assert without_comparison(Entry("4", 0.99), "3", "best_val_mcc") is None


def test_no_new_training_run_changes_nothing():
    decision = no_new_run("2", "bertcls")
    assert (
        decision.alias is None and "no training run in 'bertcls' finished since champion version 2" in decision.message
    )


@pytest.mark.parametrize(
    ("mine", "theirs", "metric", "alias", "reason"),
    [
        (0.95, 0.90, "best_val_mcc", CHAMPION, "beat the champion"),
        (0.85, 0.90, "best_val_mcc", CHALLENGER, "did not beat the champion"),
        (0.90, 0.90, "best_val_mcc", CHALLENGER, "did not beat the champion"),  # a tie keeps the champion
        (0.20, 0.30, "best_val_loss", CHAMPION, "beat the champion"),  # lower is better
        (0.40, 0.30, "test_mse", CHALLENGER, "did not beat the champion"),
    ],
)
def test_candidate_must_strictly_beat_the_champion_in_the_metrics_direction(mine, theirs, metric, alias, reason):
    decision = after_comparison(Entry("5", mine), Entry("2", theirs), metric, LOGGED, force=False)
    assert (decision.alias, decision.reason) == (alias, reason)
    if alias == CHALLENGER:
        assert "does not beat champion version 2" in decision.message and "force=true" in decision.message
    else:
        assert decision.message.startswith("version 5 is the new champion (beat the champion")


def test_force_promotes_a_loser_and_says_so():
    decision = after_comparison(Entry("5", 0.1), Entry("2", 0.9), "best_val_mcc", EVALUATED, force=True)
    assert (decision.alias, decision.reason) == (CHAMPION, "forced")
    assert "forced: best_val_mcc 0.1000 vs 0.9000 of version 2, evaluated" in decision.message


@pytest.mark.parametrize(
    ("same_data", "champion_logged", "basis"),
    [(True, True, LOGGED), (False, True, EVALUATED), (True, False, EVALUATED), (False, False, EVALUATED)],
)
def test_figures_are_compared_as_logged_only_on_the_same_examples(same_data, champion_logged, basis):
    assert comparison_basis(same_data, champion_logged) == basis


def test_mismatched_data_is_detected_on_the_split_recipe():
    from bertcls.config import DataConfig
    from bertcls.tracking.registry import comparable

    base = DataConfig()
    assert comparable(base, DataConfig(max_train_samples=100))  # training data size does not change the examples
    assert not comparable(base, DataConfig(max_eval_samples=60))
    assert not comparable(base, DataConfig(split_seed=7))
    assert not comparable(base, DataConfig(train_file="/data/a.csv"))


def test_better_is_strict():
    assert better(0.5, 0.4, "val_accuracy") and not better(0.5, 0.5, "val_accuracy")
    assert better(0.4, 0.5, "val_loss") and not better(0.5, 0.5, "val_loss")


def test_a_candidate_must_beat_the_majority_class_baseline_unless_forced():
    from bertcls.evaluation.promotion import below_baseline

    assert below_baseline("r", "best_val_mcc", 0.0, 0.0, None, force=False).alias is None  # a tie is no better
    assert below_baseline("r", "best_val_mcc", 0.1, 0.0, None, force=False) is None
    assert below_baseline("r", "best_val_mcc", 0.0, 0.0, None, force=True) is None
    assert below_baseline("r", "best_val_mse", 0.9, 1.0, None, force=False) is None  # lower is better for mse
    assert below_baseline("r", "best_val_mse", 1.1, 1.0, None, force=False) is not None
    assert below_baseline("r", "best_val_mcc", 0.0, None, None, force=False) is None  # runs from before baselines
