"""Nobody else's runs: a worker closes only the dead runs of its own storage's study."""

from __future__ import annotations

import os

from optuna.trial import TrialState

from pipeline.config import compose
from pipeline.study.bookkeeping import close_orphaned_runs
from pipeline.study.identity import study_uid
from pipeline.tracking.runs import start_run
from pipeline.tracking.schema import Role, Tag
from pipeline.tracking.store import open_store
from tests.sweep_store import RunSpec, dead_pid, study_of, write_runs


def test_two_storages_share_one_mlflow_store_and_each_closes_only_its_own_dead_runs(
        tiny_overrides, tmp_path):
    """The same command with another sweep.storage (a worker that forgot it, or two people on one
    MLflow server): one study name, two studies. This storage's dead run is closed; the other
    storage's live runs, on another machine or in a live process here, stay RUNNING."""
    ours = tiny_overrides()
    theirs = tiny_overrides(f"sweep.storage=sqlite:///{tmp_path / 'theirs.db'}")
    study, other = study_of(ours), study_of(theirs)
    assert study.study_name == other.study_name and study_uid(study) != study_uid(other)
    store = open_store(compose(ours))

    dead = {Tag.STUDY_NAME: study.study_name, Tag.STUDY_UID: study_uid(study),
            Tag.PID: dead_pid()}
    mine = study.ask()
    study.tell(mine, state=TrialState.FAIL)  # failed by the heartbeat check: its worker died
    my_parent = start_run(store, Role.STUDY, **dead)
    elsewhere = {Tag.STUDY_NAME: other.study_name, Tag.STUDY_UID: study_uid(other),
                 Tag.HOST: "another-machine", Tag.PID: "4242"}
    other.ask()  # trial 0, RUNNING in the other storage only
    their_parent = start_run(store, Role.STUDY, **elsewhere)
    alive_here = {Tag.STUDY_NAME: other.study_name, Tag.STUDY_UID: study_uid(other),
                  Tag.PID: str(os.getpid())}
    specs = [
        RunSpec({Tag.ROLE: Role.TRIAL, Tag.OPTUNA_TRIAL: "0", **dead, Tag.PARENT: my_parent},
                status="RUNNING"),
        RunSpec({Tag.ROLE: Role.TRIAL, Tag.OPTUNA_TRIAL: "0", **elsewhere,
                 Tag.PARENT: their_parent}, status="RUNNING"),
        RunSpec({Tag.ROLE: Role.TRIAL, Tag.OPTUNA_TRIAL: "1", **alive_here}, status="RUNNING"),
    ]
    write_runs(store, specs)

    assert close_orphaned_runs(store, study) == 1
    status = {spec.run_id: store.get_run(spec.run_id).info.status for spec in specs}
    assert [status[spec.run_id] for spec in specs] == ["KILLED", "RUNNING", "RUNNING"]
    assert store.get_run(specs[0].run_id).data.tags[Tag.STATE] == "FAIL"
    assert store.get_run(my_parent).info.status == "KILLED"
    assert store.get_run(their_parent).info.status == "RUNNING"
    # The other storage's worker, looking in turn, leaves ours alone too (none of its own dead).
    assert close_orphaned_runs(store, other) == 0
    assert store.get_run(specs[1].run_id).info.status == "RUNNING"
