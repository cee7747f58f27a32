"""Buy-till-you-die models: BG/NBD (Fader, Hardie & Lee 2005, "Counting your customers the easy
way") for the number of repeat purchases, and Gamma-Gamma (Fader, Hardie & Lee 2005, "RFM and
CLV") for their value, fitted by maximum likelihood with scipy.

Inputs per customer, in any time unit used consistently: ``x`` repeat purchases (purchases after
the first, same-day purchases merged), ``t_x`` time of the last purchase and ``T`` age, both
counted from the first purchase; ``m`` the mean value of the repeat purchases.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import gammaln, hyp2f1


def _fit(nll, k: int) -> np.ndarray:
    best = None
    for start in (np.zeros(k), np.full(k, 0.5), np.full(k, -0.5)):
        res = minimize(nll, start, method="L-BFGS-B", bounds=[(-12, 12)] * k)
        if best is None or res.fun < best.fun:
            best = res
    return np.exp(best.x)


@dataclass
class BetaGeo:
    """BG/NBD: while alive a customer buys at Poisson rate λ ~ Gamma(r, α); after each purchase
    they drop out with probability p ~ Beta(a, b)."""

    r: float = 1.0
    alpha: float = 1.0
    a: float = 1.0
    b: float = 1.0

    @staticmethod
    def log_likelihood(params, x, t_x, T) -> np.ndarray:
        r, alpha, a, b = params
        a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
        a2 = gammaln(a + b) + gammaln(b + x) - gammaln(b) - gammaln(a + b + x)
        a3 = -(r + x) * np.log(alpha + T)
        with np.errstate(divide="ignore", invalid="ignore"):
            a4 = np.where(x > 0, np.log(a) - np.log(np.maximum(b + x - 1, 1e-12)) - (r + x) * np.log(alpha + t_x),
                          -np.inf)
        return a1 + a2 + np.logaddexp(a3, a4)

    def fit(self, x, t_x, T) -> "BetaGeo":
        x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
        scale = max(T.max(), 1e-9) / 10   # fit on a unit where T is ~10, then rescale α
        nll = lambda lp: -self.log_likelihood(np.exp(lp), x, t_x / scale, T / scale).sum()  # noqa: E731
        r, alpha, a, b = _fit(nll, 4)
        self.r, self.alpha, self.a, self.b = r, alpha * scale, a, b
        return self

    def _odds_dead(self, x, t_x, T) -> np.ndarray:
        x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(x > 0, self.a / np.maximum(self.b + x - 1, 1e-12)
                            * ((self.alpha + T) / (self.alpha + t_x)) ** (self.r + x), 0.0)

    def probability_alive(self, x, t_x, T) -> np.ndarray:
        return 1.0 / (1.0 + self._odds_dead(x, t_x, T))

    def expected_purchases(self, t, x, t_x, T) -> np.ndarray:
        """Expected purchases in the next ``t`` time units, given the history."""
        x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        z = t / (alpha + T + t)
        num = (a + b + x - 1) / (a - 1) * (
            1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp2f1(r + x, b + x, a + b + x - 1, z))
        return num / (1.0 + self._odds_dead(x, t_x, T))


@dataclass
class GammaGamma:
    """Gamma-Gamma: a customer's mean transaction value, shrunk towards the population mean the
    fewer purchases it rests on."""

    p: float = 1.0
    q: float = 1.0
    v: float = 1.0

    def fit(self, x, m) -> "GammaGamma":
        x, m = np.asarray(x, dtype=float), np.asarray(m, dtype=float)
        keep = (x > 0) & (m > 0)
        x, m = x[keep], m[keep]
        scale = float(np.mean(m)) or 1.0
        ms = m / scale

        def nll(lp):
            p, q, v = np.exp(lp)
            return -(gammaln(p * x + q) - gammaln(p * x) - gammaln(q) + q * np.log(v) + (p * x - 1) * np.log(ms)
                     + p * x * np.log(x) - (p * x + q) * np.log(v + ms * x)).sum()

        self.p, self.q, v = _fit(nll, 3)
        self.v = v * scale
        return self

    def expected_value(self, x, m) -> np.ndarray:
        """E[mean transaction value | x repeat purchases of mean m]; the population mean for x = 0."""
        x, m = np.asarray(x, dtype=float), np.nan_to_num(np.asarray(m, dtype=float))
        population = self.p * self.v / (self.q - 1) if self.q > 1 else np.nan
        return np.where(x > 0, (self.p * (self.v + x * m)) / (self.p * x + self.q - 1), population)
