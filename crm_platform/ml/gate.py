"""The quality gate: a challenger is promoted only if it beats the naive baseline clearly and is
not worse than the champion beyond a tolerance, both in the task's main metric measured on the
same test examples."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    metric: str
    challenger: float | None
    baseline: float | None
    champion: float | None
    reasons: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return ("promoted: " if self.passed else "refused: ") + "; ".join(self.reasons)


def decide(metric: str, challenger: float | None, baseline: float | None, champion: float | None,
           margin: float, tolerance: float, higher_is_better: bool = True,
           champion_version: str | None = None) -> GateDecision:
    """``champion`` is the champion's metric on the challenger's test examples: None when the task
    has no champion yet, or when the champion (``champion_version``) could not be measured there
    (its features are not in this test set, another kind of model): then the challenger is judged
    against the baseline alone, and the reason says which. ``challenger`` is None when nothing was
    trained."""
    sign = 1 if higher_is_better else -1
    reasons, ok = [], True
    if challenger is None:
        return GateDecision(False, metric, None, baseline, champion, ["no challenger was trained"])
    if baseline is None:
        ok = False
        reasons.append("no baseline to compare with")
    elif sign * (challenger - baseline) < margin:
        ok = False
        reasons.append(f"{metric} {challenger:.4f} does not beat the baseline {baseline:.4f} by {margin}")
    else:
        reasons.append(f"{metric} {challenger:.4f} beats the baseline {baseline:.4f} by at least {margin}")
    if champion is None and champion_version:
        reasons.append(f"the champion {champion_version} could not be measured on this test set (other features "
                       "or another kind of model): judged against the baseline alone")
    elif champion is None:
        reasons.append("no champion yet")
    elif sign * (challenger - champion) < -tolerance:
        ok = False
        reasons.append(f"{metric} {challenger:.4f} is worse than the champion's {champion:.4f} "
                       f"beyond the tolerance {tolerance}")
    else:
        reasons.append(f"{metric} {challenger:.4f} is within {tolerance} of or better than the champion's {champion:.4f}")
    return GateDecision(ok, metric, challenger, baseline, champion, reasons)
