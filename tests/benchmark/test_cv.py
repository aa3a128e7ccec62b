"""The cv bench's floors: what fold pruning that keeps every leader, and an oracle, must train."""

from __future__ import annotations

import optuna

from pipeline.benchmark.cv import _epoch_floors


def _trial(state: str, steps: dict[int, float], epochs: int, value: float | None = None):
    return optuna.trial.create_trial(
        state=optuna.trial.TrialState[state], value=value, intermediate_values=steps,
        user_attrs={"epochs": epochs}, params={}, distributions={})


def test_floors_count_first_folds_and_the_later_folds_of_leaders_or_of_the_best():
    # 3 folds of 3 epochs; running means reported at steps 3, 4 and 5.
    study = optuna.create_study(direction="maximize")
    study.add_trial(_trial("COMPLETE", {0: .5, 1: .6, 2: .6, 3: .6, 4: .62, 5: .61}, 9, .61))
    study.add_trial(_trial("PRUNED", {0: .3, 1: .3}, 2))  # in its first fold
    # Leads the best so far (.61) after folds 1 and 2; its last mean (.6) saves nothing.
    study.add_trial(_trial("COMPLETE", {0: .7, 1: .7, 2: .7, 3: .7, 4: .65, 5: .66}, 9, .66))
    # Below the best so far (.66) after its first fold: a rule keeping leaders may stop it.
    study.add_trial(_trial("COMPLETE", {0: .5, 1: .55, 2: .6, 3: .6, 4: .64, 5: .62}, 9, .62))
    floors = _epoch_floors(study, first_step=3, folds=3)
    first = 3 + 2 + 3 + 3
    assert floors == {"leaders": first + 6 + 6, "oracle": first + 6}


def test_a_minimised_objective_leads_from_below():
    study = optuna.create_study(direction="minimize")
    study.add_trial(_trial("COMPLETE", {0: .5, 1: .4, 2: .4, 3: .4}, 4, .4))
    study.add_trial(_trial("COMPLETE", {0: .6, 1: .5, 2: .5, 3: .5}, 4, .5))  # never leads
    assert _epoch_floors(study, first_step=2, folds=2) == {"leaders": 2 + 2 + 2, "oracle": 6}
