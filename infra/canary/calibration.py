"""Calibration on the stable revision's own history, fixed before the canary gets traffic.

Real 5xx counts are overdispersed: a crash kills every in-flight request at once (clumps), and the
rate drifts from minute to minute. Both inflate the variance of per-interval counts beyond the
binomial the relative test assumes, and a drift that hits one revision at a time also moves the
per-interval ratio of the two revisions' rates (E[G_c / G_s] = 1 / (1 - cv^2) for independent gamma
noise of coefficient of variation cv on each).

From stable's per-interval counts over the `history_s` before the canary started (one ListTimeSeries,
read before the first canary interval, so the calibration is predictable and the e-processes stay
valid) we estimate Pearson's dispersion D = sum((x - p n)^2 / (p n)) / (H - 1). If D is not
significantly above 1 (z > `significance_z` for the chi-square's sd sqrt(2 / (H - 1))) we keep the
binomial (D = 1). Otherwise, as nothing separates clumps from drift at one traffic level, we take the
conservative reading of both:
* the errors test's log-likelihood ratios are tempered by 1 + (D - 1) * max(1, m / mu), m the
  interval's event count and mu the history's mean (the quasi-likelihood correction; the drift part
  grows with the count, so it is scaled up at higher traffic);
* its tolerance is widened by 1 / (1 - c2), c2 = (D - 1) / mu, the squared drift cv if all excess
  variance were drift (capped at `max_drift`).
Both only make the test more conservative when the data are clean.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Calibration:
    dispersion: np.ndarray  # (R,) D used (>= 1)
    drift: np.ndarray  # (R,) c2 used
    mean_events: np.ndarray  # (R,) mu: stable's mean 5xx per history interval
    intervals: np.ndarray  # (R,) history intervals with requests
    raw_dispersion: np.ndarray  # (R,) D as measured (NaN without data)

    @staticmethod
    def none(runs: int) -> "Calibration":
        one = np.ones(runs)
        return Calibration(one, np.zeros(runs), np.zeros(runs), np.zeros(runs, int), np.full(runs, np.nan))

    def temper(self, events: np.ndarray) -> np.ndarray:
        scale = np.divide(events, self.mean_events, out=np.ones_like(events, dtype=float),
                          where=self.mean_events > 0)
        return 1.0 + (self.dispersion - 1.0) * np.maximum(1.0, scale)

    def boundary_factor(self) -> np.ndarray:
        return 1.0 / (1.0 - self.drift)

    def summary(self, i: int = 0) -> dict:
        raw = float(self.raw_dispersion[i])
        return {
            "history_intervals": int(self.intervals[i]),
            "stable_mean_5xx_per_interval": round(float(self.mean_events[i]), 3),
            "measured_dispersion": None if raw != raw else round(raw, 3),
            "dispersion_used": round(float(self.dispersion[i]), 3),
            "drift_cv2_used": round(float(self.drift[i]), 4),
        }


def calibrate(requests: np.ndarray, errors: np.ndarray, significance_z: float = 2.5,
              max_drift: float = 0.5, min_intervals: int = 5) -> Calibration:
    """requests, errors: (R, H) stable counts per history interval (NaN or negative: ignored)."""
    n = np.asarray(requests, float)
    e = np.asarray(errors, float)
    good = np.isfinite(n) & np.isfinite(e) & (n > 0) & (e >= 0) & (e <= n)
    n, e = np.where(good, n, 0.0), np.where(good, e, 0.0)
    H = good.sum(axis=1)
    p = np.divide(e.sum(axis=1), n.sum(axis=1), out=np.zeros(len(n)), where=n.sum(axis=1) > 0)
    mu = p[:, None] * n
    with np.errstate(divide="ignore", invalid="ignore"):
        pearson = np.where(good & (mu > 0), (e - mu) ** 2 / np.where(mu > 0, mu, 1.0), 0.0).sum(axis=1)
    df = np.maximum(H - 1, 1)
    enough = (H >= min_intervals) & (e.sum(axis=1) > 0)
    raw = np.where(enough, pearson / df, np.nan)
    significant = enough & (raw > 1 + significance_z * np.sqrt(2.0 / df))
    D = np.where(significant, raw, 1.0)
    mean_events = np.divide(e.sum(axis=1), H, out=np.zeros(len(n)), where=H > 0)
    c2 = np.divide(D - 1.0, mean_events, out=np.zeros(len(n)), where=mean_events > 0)
    return Calibration(D, np.clip(c2, 0.0, max_drift), mean_events, H, raw)
