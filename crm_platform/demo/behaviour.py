"""Customer behaviour with real signal, simulated month by month for a chunk of persons at once.

Each customer has a latent purchase rate, order value, engagement, return propensity and coupon
affinity. Month by month they buy (with seasonality), return items, open tickets (more after
returns; some stay unresolved), read or ignore newsletters (heavy mailing tires them), visit the
site, answer NPS surveys, and may churn. The churn hazard rises with open tickets, a low NPS,
returns and e-mail fatigue and falls with engagement; a churned customer stops buying.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone

import numpy as np

from crm_platform.demo import names as N

CHANNEL_NAMES = list(N.CHANNELS)
CHANNEL_P = np.array([w for w, _ in N.CHANNELS.values()]) / sum(w for w, _ in N.CHANNELS.values())
# where a visit that is not the first purchase comes from; "acquisition" = the customer's own
# acquisition channel. Codes >= 0 index this list, codes < 0 are -1 - acquisition channel index.
VISIT_SOURCES = ["direct", "organic_search", "acquisition", "newsletter", "paid_search", "social"]
VISIT_P = np.array([0.35, 0.25, 0.2, 0.1, 0.05, 0.05])
NO_SOURCE = 1_000                                  # events after a session's landing page
N_CAT = len(N.CATEGORIES)
CAT_PRICE = np.array([N.CATEGORY_PRICE[c] for c in N.CATEGORIES])


def _affinity() -> np.ndarray:
    """Row c: the probability that an item bought 'next to' category c is of each category."""
    a = np.ones((N_CAT, N_CAT))
    for x, y in N.CATEGORY_AFFINITY:
        i, j = N.CATEGORIES.index(x), N.CATEGORIES.index(y)
        a[i, j] = a[j, i] = 8.0
    np.fill_diagonal(a, 0.5)
    return a / a.sum(axis=1, keepdims=True)


AFFINITY = _affinity()
EMAIL_TYPES = np.array(["send", "open", "click", "unsubscribe", "bounce"])
WEB_TYPES = np.array(["page_view", "product_view", "add_to_cart", "checkout", "login"])


def month_bounds(end: date, months: int) -> np.ndarray:
    """Epoch seconds of the first day of each month, months+1 values ending after ``end``."""
    y, m = end.year, end.month
    starts = []
    for _ in range(months + 1):
        starts.append(datetime(y, m, 1, tzinfo=timezone.utc).timestamp())
        m -= 1
        if m == 0:
            y, m = y - 1, 12
    bounds = np.array(sorted(starts), dtype=np.int64)
    # last bound: end of the end month
    ny, nm = (end.year + 1, 1) if end.month == 12 else (end.year, end.month + 1)
    bounds[-1] = int(datetime(ny, nm, 1, tzinfo=timezone.utc).timestamp())
    return bounds


@dataclass
class Behaviour:
    # per person
    is_customer: np.ndarray
    acquired_at: np.ndarray          # epoch seconds (-1: never a customer)
    channel: np.ndarray              # index into CHANNEL_NAMES
    churned_at: np.ndarray           # epoch seconds (-1: still active at the end)
    subscribed_at: np.ndarray        # newsletter (-1: never subscribed)
    # events: dict of column -> array
    orders: dict
    items: dict
    tickets: dict
    emails: dict
    web: dict
    nps: dict


def _times(rng, lo: np.ndarray | int, hi: np.ndarray | int, n: int) -> np.ndarray:
    return (lo + (rng.random(n) * (np.asarray(hi) - np.asarray(lo)))).astype(np.int64)


def simulate(rng: np.random.Generator, n: int, bounds: np.ndarray, p_customer: float,
             p_newsletter: float, forced_customer: np.ndarray | None = None) -> Behaviour:
    months = len(bounds) - 1
    is_cust = rng.random(n) < p_customer
    if forced_customer is not None:
        is_cust |= forced_customer
    # Acquisition grows over time: later months acquire more.
    w = np.linspace(1.0, 1.8, months)
    acq_month = np.where(is_cust, rng.choice(months, size=n, p=w / w.sum()), months)
    acq_at = np.where(is_cust, _times(rng, bounds[np.minimum(acq_month, months - 1)],
                                      bounds[np.minimum(acq_month, months - 1) + 1], n), -1)
    channel = rng.choice(len(CHANNEL_NAMES), size=n, p=CHANNEL_P)
    rate = rng.gamma(1.6, 0.22, n)                      # orders per month
    aov = rng.lognormal(0.0, 0.45, n)                   # order value factor
    engagement = rng.beta(2.2, 2.8, n)
    p_return = rng.beta(1.2, 7.0, n)
    coupon = rng.beta(1.0, 4.0, n)
    fav = np.argsort(rng.random((n, N_CAT)) * rng.dirichlet(np.ones(N_CAT) * 0.6), axis=1)[:, ::-1][:, :3]
    subscribed = rng.random(n) < p_newsletter
    sub_month = np.where(subscribed, rng.integers(0, months, n), months)
    sub_month = np.where(is_cust & subscribed, np.minimum(sub_month, acq_month + rng.integers(0, 3, n)), sub_month)
    sub_at = np.where(subscribed, _times(rng, bounds[np.minimum(sub_month, months - 1)],
                                         bounds[np.minimum(sub_month, months - 1) + 1], n), -1)
    heavy = rng.random(n) < 0.15                         # on the high-frequency mailing list
    alive = np.ones(n, bool)
    unsub = np.zeros(n, bool)
    churned_at = np.full(n, -1, np.int64)
    open_tickets = np.zeros(n)
    last_nps = np.full(n, 8.0)
    recent_returns = np.zeros(n)
    fatigue = np.zeros(n)

    out = {k: [] for k in ("o_p", "o_t", "o_web", "t_p", "t_open", "t_close", "t_esc", "t_sat", "t_cat", "t_pri",
                           "e_p", "e_t", "e_type", "e_c", "w_p", "w_t", "w_s", "w_type", "w_login", "w_src",
                           "w_cat", "n_p", "n_t", "n_s")}
    for m in range(months):
        lo, hi = bounds[m], bounds[m + 1]
        month_of_year = datetime.fromtimestamp(int(lo), timezone.utc).month
        season = 1.0 + 0.45 * (month_of_year in (11, 12)) + 0.15 * (month_of_year in (6, 7)) \
            - 0.15 * (month_of_year in (1, 2))
        active = is_cust & alive & (acq_month <= m)
        lam = rate * season * (1 + 0.6 * engagement)
        k = np.where(active, rng.poisson(lam), 0)
        k = np.where(active & (acq_month == m), np.maximum(k, 1), k)
        p_idx = np.repeat(np.arange(n), k)
        t = _times(rng, np.where(acq_month[p_idx] == m, acq_at[p_idx], lo), hi, len(p_idx))
        online = rng.random(len(p_idx)) < 0.6
        out["o_p"].append(p_idx)
        out["o_t"].append(t)
        out["o_web"].append(online)
        # Returns this month (per person, from an expected share; items decide exact flags later).
        returns = rng.binomial(k * 2, p_return)
        recent_returns = 0.6 * recent_returns + returns
        # Tickets: more after returns; some stay unresolved.
        tk = np.where(active, rng.poisson(0.008 + 0.12 * (returns > 0) + 0.015 * (k > 0)), 0)
        tp = np.repeat(np.arange(n), tk)
        topen = _times(rng, lo, hi, len(tp))
        unresolved = rng.random(len(tp)) < 0.18
        escal = rng.random(len(tp)) < (0.08 + 0.3 * unresolved)
        tclose = np.where(unresolved, -1, topen + rng.integers(3600, 14 * 86400, len(tp)))
        sat = np.where(unresolved | (rng.random(len(tp)) < 0.5), -1,
                       np.clip(np.round(rng.normal(4.1 - 1.5 * escal, 0.9)), 1, 5)).astype(int)
        out["t_p"].append(tp); out["t_open"].append(topen); out["t_close"].append(tclose)
        out["t_esc"].append(escal); out["t_sat"].append(sat)
        out["t_cat"].append(np.where(returns[tp] > 0, 1, rng.integers(0, len(N.TICKET_CATEGORIES), len(tp))))
        out["t_pri"].append(rng.choice(4, size=len(tp), p=[0.25, 0.5, 0.2, 0.05]))
        open_tickets = 0.85 * open_tickets + np.bincount(tp[unresolved], minlength=n)
        # Newsletter: one issue a month, three more on the heavy list; fatigue dulls opens.
        mailed = subscribed & ~unsub & (sub_month <= m)
        sends = np.where(mailed, 1 + 3 * heavy, 0)
        fatigue = 0.8 * fatigue + 0.1 * (sends > 1)
        p_open = np.clip(0.55 * engagement * (1 - fatigue) + 0.05, 0.01, 0.95)
        opens = rng.binomial(sends, p_open)
        clicks = rng.binomial(opens, np.clip(0.35 * engagement, 0.01, 0.9))
        new_unsub = mailed & (rng.random(n) < 0.004 + 0.02 * fatigue + 0.01 * heavy)
        bounce = mailed & (rng.random(n) < 0.002)
        unsub |= new_unsub | bounce
        for typ, cnt in ((0, sends), (1, opens), (2, clicks), (3, new_unsub.astype(int)),
                         (4, bounce.astype(int))):
            ep = np.repeat(np.arange(n), cnt)
            out["e_p"].append(ep); out["e_t"].append(_times(rng, lo, hi, len(ep)))
            out["e_type"].append(np.full(len(ep), typ)); out["e_c"].append(np.full(len(ep), m))
        # Web sessions: engaged customers browse more; most orders are placed online, in a session
        # that ends in checkout (the rest come by app or phone and leave no web trace).
        sess = np.where(is_cust & alive & (acq_month <= m), rng.poisson(0.08 + 0.3 * engagement), 0)
        sp = np.concatenate([np.repeat(np.arange(n), sess), p_idx[online]])
        st = np.concatenate([_times(rng, lo, hi, int(sess.sum())), t[online] - 600])
        buy = np.concatenate([np.zeros(int(sess.sum()), bool), np.ones(int(online.sum()), bool)])
        # Traffic source of each session: the first order, when placed online, arrives through
        # the channel that acquired the customer; other visits come direct, from search, back
        # through that channel, from the newsletter (subscribers) or from ads.
        first = np.zeros(len(p_idx), bool)
        if len(p_idx):
            earliest = np.full(n, np.iinfo(np.int64).max)
            np.minimum.at(earliest, p_idx, t)
            first = (acq_month[p_idx] == m) & (t == earliest[p_idx])
        src = rng.choice(len(VISIT_SOURCES), size=len(sp), p=VISIT_P)
        src = np.where(src == VISIT_SOURCES.index("acquisition"), -1 - channel[sp], src)
        src = np.where((src == VISIT_SOURCES.index("newsletter")) & ~subscribed[sp], VISIT_SOURCES.index("direct"), src)
        src = np.concatenate([src[:int(sess.sum())],
                              np.where(first[online], -1 - channel[p_idx[online]], src[int(sess.sum()):])])
        login = buy | (rng.random(len(sp)) < 0.45)
        length = rng.integers(1, 3, len(sp))
        cart = buy | (rng.random(len(sp)) < 0.2)
        n_ev = length + login + cart + buy
        ev_sess = np.repeat(np.arange(len(sp)), n_ev)
        pos = np.arange(len(ev_sess)) - np.repeat(np.cumsum(n_ev) - n_ev, n_ev)
        etype = np.where(pos == 0, 0, 1)
        etype = np.where(login[ev_sess] & (pos == 1), 4, etype)
        last = pos == n_ev[ev_sess] - 1
        etype = np.where(buy[ev_sess] & last, 3, etype)
        etype = np.where(cart[ev_sess] & ((buy[ev_sess] & (pos == n_ev[ev_sess] - 2)) |
                                          (~buy[ev_sess] & last)), 2, etype)
        out["w_p"].append(sp[ev_sess]); out["w_t"].append(st[ev_sess] + pos * 45)
        out["w_s"].append(ev_sess + m * 10_000_000); out["w_type"].append(etype)
        out["w_login"].append(login[ev_sess] & (pos >= 1))
        out["w_src"].append(np.where(pos == 0, src[ev_sess], NO_SOURCE))
        out["w_cat"].append(fav[sp[ev_sess], rng.integers(0, 3, len(ev_sess))])
        # NPS: a survey reaches a few customers each month (2.5 % of the active ones answer: enough
        # for a 30-day NPS of a base of 10,000 customers); the answer reflects their experience.
        answer = active & (rng.random(n) < 0.025)
        score = np.clip(np.round(rng.normal(8.3 - 2.2 * np.minimum(open_tickets, 2)
                                            - 3.0 * np.minimum(recent_returns / 4, 1)
                                            + 1.0 * (engagement - 0.5), 1.6)), 0, 10)
        last_nps = np.where(answer, score, last_nps)
        npi = np.flatnonzero(answer)
        out["n_p"].append(npi); out["n_t"].append(_times(rng, lo, hi, len(npi)))
        out["n_s"].append(score[npi].astype(int))
        # Churn hazard.
        hazard = 0.018 * np.exp(0.9 * np.minimum(open_tickets, 3) + 0.8 * (last_nps <= 6)
                                + 0.35 * np.minimum(recent_returns, 3) + 0.9 * fatigue
                                - 1.6 * (engagement - 0.5) - 0.8 * (rate - 0.35))
        churn = active & (rng.random(n) < hazard)
        churned_at = np.where(churn, _times(rng, lo, hi, n), churned_at)
        alive &= ~churn

    cat = {k: np.concatenate(v) if v else np.array([]) for k, v in out.items()}
    orders, items = _orders(rng, cat["o_p"], cat["o_t"], cat["o_web"].astype(bool), aov, p_return, coupon, fav, bounds[-1])
    return Behaviour(
        is_customer=is_cust, acquired_at=acq_at, channel=channel, churned_at=churned_at,
        subscribed_at=sub_at, orders=orders, items=items,
        tickets={"p": cat["t_p"], "opened": cat["t_open"], "closed": cat["t_close"],
                 "escalated": cat["t_esc"], "satisfaction": cat["t_sat"], "category": cat["t_cat"],
                 "priority": cat["t_pri"]},
        emails={"p": cat["e_p"], "t": cat["e_t"], "type": cat["e_type"], "campaign": cat["e_c"]},
        web={"p": cat["w_p"], "t": cat["w_t"], "session": cat["w_s"], "type": cat["w_type"],
             "login": cat["w_login"], "category": cat["w_cat"], "source": cat["w_src"]},
        nps={"p": cat["n_p"], "t": cat["n_t"], "score": cat["n_s"]},
    )


def _orders(rng, op, ot, web, aov, p_return, coupon, fav, end_ts):
    order = np.argsort(ot, kind="stable")
    op, ot, web = op[order], ot[order], web[order]
    n_orders = len(op)
    n_items = 1 + rng.poisson(0.8, n_orders)
    oi = np.repeat(np.arange(n_orders), n_items)
    line = np.arange(len(oi)) - np.repeat(np.cumsum(n_items) - n_items, n_items) + 1
    # 80% from the customer's favourite categories, the rest from a category that goes with one of
    # them (cross-sell affinity: shoes with fashion and sports, toys with books, ...)
    from_fav = fav[op[oi], rng.integers(0, 3, len(oi))]
    cum = np.cumsum(AFFINITY[from_fav], axis=1)
    related = np.minimum((cum < rng.random(len(oi))[:, None]).sum(axis=1), N_CAT - 1)
    cat = np.where(rng.random(len(oi)) < 0.8, from_fav, related)
    price = np.round(CAT_PRICE[cat] * aov[op[oi]] * rng.lognormal(0, 0.3, len(oi)), 2) - 0.01
    price = np.maximum(price, 1.99)
    qty = 1 + (rng.random(len(oi)) < 0.15) * rng.integers(1, 3, len(oi))
    returned = rng.random(len(oi)) < p_return[op[oi]]
    returned_at = np.where(returned, np.minimum(ot[oi] + rng.integers(2, 30, len(oi)) * 86400,
                                                end_ts - 1), -1)
    gross = np.bincount(oi, weights=price * qty, minlength=n_orders)
    has_coupon = rng.random(n_orders) < coupon[op]
    discount = np.round(np.where(has_coupon, gross * rng.choice([0.1, 0.15, 0.2], n_orders), 0), 2)
    shipping = np.where(gross >= 50, 0.0, 4.95)
    total = np.round(gross - discount + shipping, 2)
    ret_items = np.bincount(oi, weights=returned, minlength=n_orders)
    status = np.where(ret_items == 0, 0, np.where(ret_items == n_items, 2, 3))
    status = np.where(rng.random(n_orders) < 0.02, 1, status)
    orders = {"p": op, "t": ot, "total": total, "discount": discount, "shipping": shipping,
              "status": status, "coupon": has_coupon,
              "channel": np.where(web, 0, rng.choice([1, 2], size=n_orders, p=[0.85, 0.15]))}
    items = {"order": oi, "line": line, "category": cat, "price": price, "qty": qty,
             "returned": returned, "returned_at": returned_at}
    return orders, items
