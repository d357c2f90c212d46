"""Where a training run's time goes: data loading, setup, training, validation, checkpoints, final
evaluation (every candidate's predictions and the choice), writing the run folder.

:class:`PhaseTimer` adds up wall-clock seconds per named phase (``with timer.phase("training"):``);
the totals go into ``summary.json`` (``time``) and the last lines of the log. A resumed run carries
the earlier sessions' totals in ``checkpoints/last.pt`` and adds its own.
"""
from __future__ import annotations

import contextlib
import time

#: the phases in the order a run meets them (others, if any, follow in the order first used)
PHASES = ("data", "setup", "training", "validation", "checkpoints", "final_evaluation", "writing")


class PhaseTimer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def phase(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def total(self) -> float:
        return sum(self.seconds.values())

    def summary(self) -> dict:
        """``{phase: seconds}`` (rounded, known phases first) plus ``total``."""
        names = [p for p in PHASES if p in self.seconds] + [p for p in self.seconds if p not in PHASES]
        out = {name: round(self.seconds[name], 2) for name in names}
        out["total"] = round(self.total(), 2)
        return out

    def describe(self) -> str:
        """One line: ``training 12.3 s (61%), validation 5.0 s (25%), ...``."""
        total = self.total() or 1.0
        return ", ".join(f"{name.replace('_', ' ')} {sec:.1f} s ({100 * sec / total:.0f}%)"
                         for name, sec in self.summary().items() if name != "total")

    def state_dict(self) -> dict:
        return dict(self.seconds)

    def load_state_dict(self, state: dict | None) -> None:
        for name, sec in (state or {}).items():
            self.seconds[name] = self.seconds.get(name, 0.0) + float(sec)
