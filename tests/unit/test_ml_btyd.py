"""BG/NBD, Pareto/NBD and Gamma-Gamma: fitted by maximum likelihood, they recover a simulated population and
predict its future purchases."""

import numpy as np

from crm_platform.ml.btyd import BetaGeo, GammaGamma, ParetoNBD

TRUE = (0.5, 5.0, 0.8, 2.5)   # r, alpha, a, b (weeks)


def _simulate(n: int, T: float, horizon: float, seed: int = 3):
    """(x, t_x) over [0, T] after a first purchase at 0, and purchases in (T, T + horizon]."""
    rng = np.random.default_rng(seed)
    r, alpha, a, b = TRUE
    lam, p = rng.gamma(r, 1 / alpha, n), rng.beta(a, b, n)
    x, t_x, future = np.zeros(n), np.zeros(n), np.zeros(n)
    for i in range(n):
        t = 0.0
        while True:
            t += rng.exponential(1 / lam[i])
            if t > T + horizon:
                break
            if t <= T:
                x[i], t_x[i] = x[i] + 1, t
            else:
                future[i] += 1
            if rng.random() < p[i]:          # drops out right after a repeat purchase
                break
    return x, t_x, np.full(n, T), future


def test_bgnbd_recovers_a_simulated_population_and_its_future():
    x, t_x, T, future = _simulate(6000, 40.0, 40.0)
    m = BetaGeo().fit(x, t_x, T)
    fitted = m.log_likelihood((m.r, m.alpha, m.a, m.b), x, t_x, T).sum()
    assert fitted >= BetaGeo.log_likelihood(TRUE, x, t_x, T).sum() - 1e-6   # the optimum is at least as good
    assert abs(m.r / TRUE[0] - 1) < 0.25 and abs(m.alpha / TRUE[1] - 1) < 0.35
    pred = m.expected_purchases(40.0, x, t_x, T)
    assert abs(pred.sum() / future.sum() - 1) < 0.08
    # more purchases and a recent last one mean a higher chance of still being a customer
    alive = m.probability_alive(np.array([0, 5, 5]), np.array([0, 39, 5]), np.array([40, 40, 40]))
    assert alive[0] == 1.0 and alive[1] > 0.8 > 0.2 > alive[2]


def test_gamma_gamma_shrinks_towards_the_population_mean():
    rng = np.random.default_rng(5)
    p, q, v = 6.0, 4.0, 15.0
    nu = rng.gamma(q, 1 / v, 4000)
    x = rng.integers(1, 8, 4000)
    m = np.array([rng.gamma(p, 1 / nu[i], x[i]).mean() for i in range(4000)])
    gg = GammaGamma().fit(x, m)
    population = p * v / (q - 1)
    assert abs(gg.expected_value(np.array([0]), np.array([0]))[0] / population - 1) < 0.1
    one, many = gg.expected_value(np.array([1, 20]), np.array([100.0, 100.0]))
    assert population < one < many < 100


def test_pareto_nbd_recovers_a_simulated_population_and_its_future():
    rng = np.random.default_rng(11)
    r, alpha, s, beta = 0.6, 10.0, 0.8, 12.0
    n, T, horizon = 6000, 40.0, 40.0
    lam, mu = rng.gamma(r, 1 / alpha, n), rng.gamma(s, 1 / beta, n)
    death = rng.exponential(1 / mu)
    x, t_x, future = np.zeros(n), np.zeros(n), np.zeros(n)
    for i in range(n):
        t = 0.0
        while True:
            t += rng.exponential(1 / lam[i])
            if t > min(death[i], T + horizon):
                break
            if t <= T:
                x[i], t_x[i] = x[i] + 1, t
            else:
                future[i] += 1
    Ts = np.full(n, T)
    m = ParetoNBD().fit(x, t_x, Ts)
    fitted = ParetoNBD.log_likelihood((m.r, m.alpha, m.s, m.beta), x, t_x, Ts).sum()
    assert fitted >= ParetoNBD.log_likelihood((r, alpha, s, beta), x, t_x, Ts).sum() - 1e-6
    assert abs(m.r / r - 1) < 0.25
    pred = m.expected_purchases(horizon, x, t_x, Ts)
    assert abs(pred.sum() / future.sum() - 1) < 0.08
    alive = m.probability_alive(np.array([5, 5]), np.array([39, 5]), np.array([40, 40]))
    assert alive[0] > 0.8 > 0.5 > alive[1]
    # the probabilities alive passed in give the same expectation
    assert np.allclose(m.expected_purchases(10, x, t_x, Ts, alive=m.probability_alive(x, t_x, Ts)),
                       m.expected_purchases(10, x, t_x, Ts))


def test_days_to_next_order_is_the_first_grid_day_reaching_one_half():
    """The binary search over the grid finds, customer by customer, the day a scan of every grid day
    finds; NaN where no day within the year reaches one expected half order."""
    from crm_platform.ml.clv import NEXT_ORDER_GRID, days_to_next_order
    rng = np.random.default_rng(2)
    n = 4000
    T = rng.integers(30, 1100, n).astype(float)                 # days since the first order
    t_x = np.floor(T * rng.random(n))
    x = np.where(t_x > 0, rng.integers(1, 40, n), 0).astype(float)
    for model in (BetaGeo(r=0.4, alpha=60.0, a=0.9, b=4.0), ParetoNBD(r=0.7, alpha=80.0, s=0.6, beta=300.0)):
        scan = np.full(n, np.nan)
        for d in NEXT_ORDER_GRID[::-1]:
            scan = np.where(model.expected_purchases(float(d), x, t_x, T) >= 0.5, d, scan)
        found = days_to_next_order(model, x, t_x, T)
        np.testing.assert_array_equal(found, scan)
        assert 0.05 < np.isnan(found).mean() < 0.95 and len(np.unique(found[~np.isnan(found)])) > 20


def test_a_fit_on_a_sample_does_not_depend_on_the_order_the_histories_come_in(monkeypatch):
    import pandas as pd

    from crm_platform.ml import btyd, clv

    monkeypatch.setattr(btyd, "MAX_FIT_ROWS", 300)         # the fits draw their samples at this size
    monkeypatch.setattr(btyd, "PARETO_FIT_ROWS", 200)
    x, t_x, T, _ = _simulate(1500, 52.0, 1.0)
    rng = np.random.default_rng(5)
    h = pd.DataFrame({"customer_id": [f"C{i:09d}" for i in range(len(x))], "repeat_days": x, "t_x_days": t_x,
                      "age_days": T, "repeat_value_avg": np.where(x > 0, rng.gamma(4.0, 25.0, len(x)), np.nan)})
    first = clv.Btyd().fit(h, 0.1)
    again = clv.Btyd().fit(h.sample(frac=1.0, random_state=1), 0.1)
    assert first.gg == again.gg and first.gg.p != GammaGamma().p
    assert first.counts == again.counts


def test_predictions_computed_in_threads_equal_one_call_bit_for_bit():
    """Long inputs are computed on a block of rows per core: the result must be the one a single
    call gives, value for value and in the same order."""
    from crm_platform.ml import btyd

    rng = np.random.default_rng(2)
    n = 3 * btyd.SPLIT_ROWS + 7
    x = rng.poisson(2, n).astype(float)
    T = rng.integers(1, 700, n).astype(float)
    t_x = np.where(x > 0, np.floor(rng.random(n) * T), 0.0)
    horizon = rng.integers(1, 365, n).astype(float)
    pareto, bg = ParetoNBD(r=0.7, alpha=80.0, s=0.6, beta=300.0), BetaGeo(r=0.4, alpha=60.0, a=0.9, b=4.0)
    assert np.array_equal(pareto.probability_alive(x, t_x, T), pareto._probability_alive(x, t_x, T))
    assert np.array_equal(bg.expected_purchases(horizon, x, t_x, T), bg._expected_purchases(horizon, x, t_x, T))
    assert np.array_equal(bg.expected_purchases(90, x, t_x, T), bg._expected_purchases(90.0, x, t_x, T))
    ll = btyd._by_rows(lambda *a: ParetoNBD.log_likelihood((0.7, 80.0, 0.6, 300.0), *a), x, t_x, T)
    assert np.array_equal(ll, ParetoNBD.log_likelihood((0.7, 80.0, 0.6, 300.0), x, t_x, T))
