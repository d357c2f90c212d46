"""musetag.workers.ordered_map: results in input order, a crashed worker blamed only on the item that
crashes alone, also when the pool breaks while the next items are being submitted."""
from __future__ import annotations

import os
import time

import pytest

from musetag.workers import CRASHED, forks, ordered_map

pytestmark = pytest.mark.skipif(not forks(), reason="the crash is simulated in forked workers")


def _upper_or_die(item: str) -> str:
    if item == "crash":
        os._exit(3)  # what a native decoder crash looks like to the pool
    return item.upper()


def _slow_first(item: str) -> str:
    if item == "slow":
        time.sleep(1.5)
    return _upper_or_die(item)


def test_unordered_results_come_as_they_finish_and_a_crash_is_still_blamed_alone():
    """prepare needs no order: with ``ordered=False`` one long track no longer holds the others' results back
    (the other workers ran out of work behind it); a crash is still retried alone and reported."""
    items = ["slow", "a", "b", "c", "d"]
    got = list(ordered_map(_slow_first, items, workers=2, ordered=False))
    assert [item for item, _, _ in got] == ["a", "b", "c", "d", "slow"]  # finished last, handed back last
    assert [item for item, _, _ in ordered_map(_slow_first, items, workers=2)] == items  # the default: in order
    items = ["slow", "a", "b", "crash", "c", "d"]
    got = list(ordered_map(_slow_first, items, workers=2, ordered=False))
    assert sorted(item for item, _, _ in got) == sorted(items)  # every item once
    outcomes = {item: outcome for item, outcome, _ in got}
    assert outcomes["crash"] is CRASHED and all(outcomes[i] == i.upper() for i in items if i != "crash")


def test_a_pool_broken_between_results_and_the_next_submit_loses_nothing():
    """One worker runs "a", then dies on "crash" while the parent, having taken "a"'s result, submits "c" (the
    pause in in_worker makes that order certain): the submit meets a broken pool. Every other item still gets
    its own result, in order; only "crash" is CRASHED."""

    def in_worker(item: str) -> bool:
        if item == "c":
            time.sleep(1.0)  # by now the worker has died on "crash"
        return True

    got = list(ordered_map(_upper_or_die, ["a", "crash", "b", "c", "d", "e"], workers=1, in_worker=in_worker))
    assert [item for item, _, _ in got] == ["a", "crash", "b", "c", "d", "e"]
    assert [outcome for _, outcome, _ in got] == ["A", CRASHED, "B", "C", "D", "E"]
    assert all(ran for _, _, ran in got)


_INTERRUPTED_RUN = """
import sys, time
from musetag.workers import ordered_map

def quick(item):
    return item

try:  # a slow consumer (writing rows): the workers wait for work, where Ctrl-C found them
    for item, outcome, _ in ordered_map(quick, range(1000), workers=2):
        print(outcome, flush=True)
        time.sleep(0.2)
except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    sys.exit(130)
"""


@pytest.mark.parametrize("attempt", range(3))
def test_ctrl_c_stops_the_workers_quietly_and_at_once(tmp_path, attempt):
    """Ctrl-C reaches the whole process group: every worker printed a KeyboardInterrupt traceback, and now and
    then the parent, having printed "interrupted", waited forever in the pool's shutdown."""
    import signal
    import subprocess
    import sys

    script = tmp_path / "run.py"
    script.write_text(_INTERRUPTED_RUN)
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # its own group, as a terminal's foreground job
    assert proc.stdout.readline().strip() == "0"  # the workers are running
    time.sleep(0.1 * attempt)
    os.killpg(proc.pid, signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError("the interrupted run did not exit within 20 s")
    assert proc.returncode == 130 and err.strip() == "interrupted", err
