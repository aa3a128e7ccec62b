"""The run protocol every stage writes and reads: the roles a run plays, its tag keys, the states a
run ends in with the MLflow status each closes with, and the filter strings that find runs by
status. Spelled once here, so a selection finds exactly what a sweep wrote."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class Role(StrEnum):
    """What a run is (tag ``role``)."""

    TRAIN = "train"  # python -m pipeline.train
    TRIAL = "trial"  # one trial of a sweep
    STUDY = "study"  # one sweep invocation: the parent of its trials
    SELECTION = "selection"  # one python -m pipeline.select_best
    ENSEMBLE = "ensemble"  # an ensemble champion's model
    EXTERNAL = "external"  # a logged model scored on another dataset
    RERUN = "rerun"  # a logged run trained again


# Runs that record a training: their end state is also a tag (a selection filters trials on it).
TRAINING_ROLES = (Role.TRAIN, Role.TRIAL, Role.RERUN)
# Runs a command closes when the process of this machine that opened them died (a kill -9);
# sweep trials and study runs are the sweep's to close.
CLOSED_WHEN_DEAD = (Role.TRAIN, Role.RERUN, Role.SELECTION, Role.ENSEMBLE, Role.EXTERNAL)


class Tag(StrEnum):
    """Every run tag key the pipeline writes or reads."""

    # Every run: what it is, which process of which machine writes it, from which commit.
    ROLE = "role"
    PARENT = "mlflow.parentRunId"
    HOST = "host"
    PID = "pid"
    GIT_COMMIT = "git_commit"
    SOURCE_NAME = "mlflow.source.name"
    SOURCE_COMMIT = "mlflow.source.git.commit"
    # How it ended (training runs; any run a dead process left RUNNING).
    STATE = "state"
    ERROR = "error"
    NOTE = "mlflow.note.content"
    # What a training trained on, and how.
    BACKBONE = "backbone"
    DATASET = "dataset"
    DATA_FINGERPRINT = "data_fingerprint"
    IMAGE_SIZE = "image_size"
    SEED = "seed"
    TORCH_THREADS = "torch_threads"
    WEIGHTS = "weights"
    FEATURE_CACHE = "feature_cache"
    # Sweeps: a trial's study and number, a study run's command, best trial and stop reason.
    STUDY_NAME = "study_name"
    # The study's own id in its Optuna storage (study user attr identity.uid): a study of the
    # same name in another storage has another, so a worker closes only its storage's runs.
    STUDY_UID = "study_uid"
    OPTUNA_TRIAL = "optuna_trial"
    SWEEP_SPACE = "sweep_space"
    BASELINE = "baseline"
    COMMAND = "command"
    STOP_REASON = "stop_reason"
    BEST_TRIAL = "best_trial"
    BEST_RUN_ID = "best_run_id"
    # Re-runs.
    RERUN_OF = "rerun_of"
    DATA_CHANGED = "data_changed"
    # Selections, ensembles, external validations.
    SELECT_METRIC = "select_metric"
    CHAMPION_RUN_ID = "champion_run_id"
    CHAMPION_BACKBONE = "champion_backbone"
    MODEL_NAME = "model_name"
    MODEL_VERSION = "model_version"
    MEMBERS = "members"
    MODEL_RUN_ID = "model_run_id"
    MODEL_URI = "model_uri"
    THRESHOLD = "threshold"
    TEMPERATURE = "temperature"
    TEST_USES = "test_uses"  # a selection: how many selections (this one included) tested its data


BEST_PARAM = "best."  # a study run's tag prefix: best.<param> of its best trial so far


class VersionTag(StrEnum):
    """Tags of the champion's registered model version: what was selected, and how to serve it."""

    RUN_ID = "run_id"
    METRIC = "metric"
    VALUE = "value"
    BACKBONE = "backbone"
    DATASET = "dataset"
    DATA_FINGERPRINT = "data_fingerprint"
    SELECTION_RUN_ID = "selection_run_id"
    OPERATING_POINT = "operating_point"
    # How the served model's probabilities and decision are made (evidence.calibration): the
    # temperature applied to each network's probabilities before they are averaged ("none":
    # unscaled), and the threshold on those averaged probabilities ("none": the most probable
    # class), chosen on the scale THRESHOLD_SCALE names (calibrated | unscaled).
    THRESHOLD = "threshold"
    TEMPERATURE = "temperature"
    TEMPERATURE_SCOPE = "temperature_scope"  # "network": each network's, before averaging
    THRESHOLD_SCALE = "threshold_scale"
    MEMBERS = "members"


class State(StrEnum):
    """How a run ended (tag ``state``)."""

    COMPLETE = "COMPLETE"
    PRUNED = "PRUNED"
    FAIL = "FAIL"
    INTERRUPTED = "INTERRUPTED"


class Status(StrEnum):
    """MLflow's own status of a run."""

    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"


# The MLflow status each state closes with. A pruned trial ended as designed: FINISHED (as
# optuna-integration's MLflowCallback logs it), its state tag PRUNED; KILLED is left to runs that
# were stopped (Ctrl-C, a dead process).
RUN_STATUS = {State.COMPLETE: Status.FINISHED, State.PRUNED: Status.FINISHED,
              State.FAIL: Status.FAILED, State.INTERRUPTED: Status.KILLED}

# Filter strings of the runs still open and of the runs that ended as designed.
RUNNING = f"attributes.status = '{Status.RUNNING}'"
FINISHED = f"attributes.status = '{Status.FINISHED}'"


def tags_of(tags: Mapping[str, object]) -> dict[str, str]:
    """``tags`` as MLflow takes them (plain strings); a key that is no ``Tag`` is a bug here."""
    return {str(Tag(key)): str(value) for key, value in tags.items()}
