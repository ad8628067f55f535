"""Early stopping of a single fit, as small callables ``stopper(step, score) -> bool``.

``score`` is what the fit is judged by at a log point: the PSNR on held-out pixels for blind fitness
(no ground truth), else the true PSNR. Stoppers keep per-fit state, so make a fresh one per fit.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class PlateauStopper:
    """Stop when the score has not improved by ``min_delta`` dB for ``patience`` log points, after a
    warm-up of ``warmup`` steps. With blind fitness this stops a DIP fit once the held-out error stops
    falling, so the iteration count adapts to the image instead of a fixed budget."""

    patience: int = 5
    min_delta: float = 0.05
    warmup: int = 0
    best: float = field(default=float("-inf"), init=False)
    since_best: int = field(default=0, init=False)

    def __call__(self, step: int, score: float) -> bool:
        if score > self.best + self.min_delta:
            self.best, self.since_best = score, 0
        else:
            self.since_best += 1
        return step >= self.warmup and self.since_best >= self.patience


@dataclass
class CurveStopper:
    """Stop a fit whose score curve is clearly behind a reference curve (the best fit so far at the
    same budget): below it by more than ``margin`` dB at a log point past ``warmup`` steps. With
    ``running_best`` both curves are compared as their best score so far (for fits that keep their
    best output, whose score can only rise)."""

    reference: list  # [(step, score), ...] sorted by step
    margin: float = 1.0
    warmup: int = 0
    running_best: bool = False
    best: float = field(default=float("-inf"), init=False)

    def __post_init__(self):
        if self.running_best:
            top, curve = float("-inf"), []
            for step, value in self.reference:
                top = max(top, value)
                curve.append((step, top))
            self.reference = curve

    def reference_at(self, step: int) -> float | None:
        best = None
        for s, value in self.reference:
            if s > step:
                break
            best = value
        return best

    def __call__(self, step: int, score: float) -> bool:
        self.best = max(self.best, score)
        if self.running_best:
            score = self.best
        if step < self.warmup:
            return False
        ref = self.reference_at(step)
        return ref is not None and score < ref - self.margin


@dataclass
class AnyStopper:
    """Stop when any of the given stoppers says so (all are updated at every log point)."""

    stoppers: tuple

    def __call__(self, step: int, score: float) -> bool:
        votes = [s(step, score) for s in self.stoppers]
        return any(votes)
