"""The failure streak: the same failure on other files, sizes or scratch names is one error."""

from __future__ import annotations

from optuna.trial import TrialState, create_trial

from pipeline.study.stopping import FailureStreak

NO_SPACE = ("OSError: [Errno 28] no space left on the device for /state/cache/features/resnet18/"
            ".train-d2-s64-cef5.npy.{host}~{pid}~801264.{tmp}.tmp ({mb} MB): free space there or "
            "move state_dir")


def failed(error: str):
    return create_trial(state=TrialState.FAIL, user_attrs={"error": error})


def test_one_full_disk_on_scratch_files_of_other_writers_is_one_failure():
    streak = FailureStreak(3)
    for host, pid, tmp, mb in (("vm", 8416, "tqxk2d5f", 9.4), ("vm", 8417, "8j3z10cz", 9.5),
                               ("node-2", 12, "11ekjwxn", 9.4)):
        streak.add(failed(NO_SPACE.format(host=host, pid=pid, tmp=tmp, mb=mb)))
    assert streak.stopped


def test_another_error_breaks_the_streak():
    streak = FailureStreak(3)
    streak.add(failed(NO_SPACE.format(host="vm", pid=1, tmp="a", mb=1)))
    streak.add(failed("RuntimeError: CUDA out of memory"))
    streak.add(failed(NO_SPACE.format(host="vm", pid=2, tmp="b", mb=1)))
    assert not streak.stopped
