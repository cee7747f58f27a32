"""The source systems of one chunk of generated persons: shop accounts and orders, newsletter,
support desk, sales CRM, NPS survey and web analytics, each written as the system exports it."""

from __future__ import annotations

import numpy as np

from crm_platform.demo import names as N
from crm_platform.demo.behaviour import simulate
from crm_platform.demo.people import GeneratorConfig, Person, make_persons, vary
from crm_platform.demo.writers import Dirt, Writers, ids

# sorted, for searchsorted; odds of converting per channel at the median deal size
LEAD_CHANNELS = np.array(["cold_call", "partner", "trade_fair", "webinar", "website_form"])
LEAD_CHANNEL_P = np.array([0.2, 0.15, 0.25, 0.15, 0.25])
LEAD_CHANNEL_ODDS = np.array([0.15, 0.9, 0.6, 1.1, 0.5])


def _next(counters: dict, name: str, n: int) -> int:
    start = counters.get(name, 1)
    counters[name] = start + n
    return start


def _is_old(rng, per: Person) -> bool:
    return bool((per.maiden or per.old_address) and rng.random() < 0.4)


class Chunk:
    """One chunk of persons (one random stream) written into every system's landing files, system
    by system in a fixed order: the order is part of the random stream, so of the output."""

    def __init__(self, rng, cfg: GeneratorConfig, start: int, n: int, bounds, w: Writers, counters: dict, spend,
                 dirt: Dirt, chunk: int):
        self.rng, self.cfg, self.start, self.n, self.bounds, self.w = rng, cfg, start, n, bounds, w
        self.counters, self.spend, self.dirt, self.chunk = counters, spend, dirt, chunk

    def write(self) -> None:
        for system in (self.setup, self.shop, self.orders, self.newsletter, self.support, self.sales, self.nps,
                       self.web, self.truth):
            system()

    def setup(self) -> None:
        """The chunk's persons and their behaviour (orders, e-mails, tickets, web, NPS), and who
        is a sales lead."""
        bounds, cfg, rng, start, n, w = self.bounds, self.cfg, self.rng, self.start, self.n, self.w
        persons = make_persons(rng, cfg, start, n, w.emails_taken)
        n = len(persons)
        sales = rng.random(n) < cfg.p_sales
        # A lead's source channel and deal size drive whether it converts (small deals from webinars
        # and partners close more often than big cold calls), so lead scoring has something to learn.
        lead_channel = rng.choice(LEAD_CHANNELS, size=n, p=LEAD_CHANNEL_P)
        lead_value = rng.lognormal(8, 0.8, size=n)
        odds = LEAD_CHANNEL_ODDS[np.searchsorted(LEAD_CHANNELS, lead_channel)] * np.exp(-0.6 * (np.log(lead_value) - 8))
        converted = sales & (rng.random(n) < odds / (1 + odds))
        b = simulate(rng, n, bounds, cfg.p_shop, cfg.p_newsletter, forced_customer=converted)
        end_ts = int(bounds[-1]) - 1
        truth_rows: list[tuple] = []
        self.persons, self.n, self.b, self.end_ts, self.truth_rows = persons, n, b, end_ts, truth_rows
        self.sales, self.converted, self.lead_channel, self.lead_value = sales, converted, lead_channel, lead_value

    def shop(self) -> None:
        """Shop accounts: one per customer, a second for some."""
        b, cfg, counters, dirt, end_ts, persons, rng, truth_rows, w = (
            self.b, self.cfg, self.counters, self.dirt, self.end_ts, self.persons, self.rng,
            self.truth_rows, self.w)
        cust = np.flatnonzero(b.is_customer)
        dup = cust[rng.random(len(cust)) < cfg.p_duplicate_in_system]
        acc_p = np.concatenate([cust, dup])
        acc_created = np.concatenate([b.acquired_at[cust],
                                      b.acquired_at[dup] + (rng.random(len(dup)) * (end_ts - b.acquired_at[dup])).astype(np.int64)])
        acc_second = np.concatenate([np.zeros(len(cust), bool), np.ones(len(dup), bool)])
        perm = rng.permutation(len(acc_p))
        acc_p, acc_created, acc_second = acc_p[perm], acc_created[perm], acc_second[perm]
        acc_no = ids("K", _next(counters, "shop", len(acc_p)), len(acc_p))
        first_acc = {}
        second_acc = {}
        known_email: dict[int, str] = {}   # the address the company holds for a person (survey invitations)
        for i, p in enumerate(acc_p):
            (second_acc if acc_second[i] else first_acc)[int(p)] = i
        rows = []
        for i, p in enumerate(acc_p):
            per = persons[p]
            per.systems.add("shop")
            email = per.alt_email if acc_second[i] else None
            # a shop phone field holds whichever number the person typed: often the mobile, sometimes
            # the household landline
            phone = per.landline if rng.random() < cfg.p_shop_landline else None
            ident = vary(rng, per, cfg, email=email, old=_is_old(rng, per), phone=phone)
            if ident.email and not acc_second[i]:
                known_email.setdefault(int(p), ident.email)
            updated = acc_created[i] + int(rng.random() * (end_ts - acc_created[i]))
            rows.append({
                "customer_no": acc_no[i], "salutation": {"f": "Frau", "m": "Herr"}[per.gender] if rng.random() < 0.8 else "",
                "first_name": ident.first, "last_name": ident.last, "email": ident.email, "phone": ident.phone,
                "street": ident.street, "zip": ident.postcode, "city": ident.city,
                "country": cfg.locale.country_value(rng),
                "birthday": ident.birth.isoformat() if ident.birth else "",
                "newsletter_optin": "1" if b.subscribed_at[p] >= 0 else "0",
                "created_at": int(acc_created[i]), "updated_at": updated})
            truth_rows.append(("shop_customers", acc_no[i], per.pid, "|".join(ident.variations + (["second_account"] if acc_second[i] else []))))
        w.shop_customers(rows, dirt)
        self.acc_no, self.acc_created, self.first_acc, self.second_acc = acc_no, acc_created, first_acc, second_acc
        self.known_email = known_email

    def orders(self) -> None:
        """Orders and their items: a person with two accounts uses the second one for some later
        orders."""
        acc_created, acc_no, b, counters, dirt, first_acc, rng, second_acc, w = (
            self.acc_created, self.acc_no, self.b, self.counters, self.dirt, self.first_acc, self.rng,
            self.second_acc, self.w)
        o = b.orders
        acct = np.array([first_acc.get(int(p), -1) for p in o["p"]], dtype=np.int64)
        has2 = np.array([int(p) in second_acc for p in o["p"]], bool)
        if has2.any():
            alt = np.array([second_acc.get(int(p), 0) for p in o["p"]])
            use2 = has2 & (o["t"] >= acc_created[alt]) & (rng.random(len(acct)) < 0.5)
            acct = np.where(use2, alt, acct)
        order_no = ids("O", _next(counters, "order", len(acct)), len(acct), 9)
        w.orders(order_no, acc_no[acct], o, dirt)
        w.items(order_no, o["t"][b.items["order"]], b.items, dirt)

    def newsletter(self) -> None:
        """Newsletter subscribers and their e-mail events."""
        b, bounds, cfg, counters, dirt, end_ts, known_email, persons, rng, truth_rows, w = (
            self.b, self.bounds, self.cfg, self.counters, self.dirt, self.end_ts, self.known_email,
            self.persons, self.rng, self.truth_rows, self.w)
        subs = np.flatnonzero(b.subscribed_at >= 0)
        sdup = subs[rng.random(len(subs)) < cfg.p_duplicate_in_system]
        sub_p = np.concatenate([subs, sdup])
        sub_second = np.concatenate([np.zeros(len(subs), bool), np.ones(len(sdup), bool)])
        perm = rng.permutation(len(sub_p))
        sub_p, sub_second = sub_p[perm], sub_second[perm]
        sub_id = ids("NL-", _next(counters, "newsletter", len(sub_p)), len(sub_p), 7)
        first_sub = {int(p): i for i, p in enumerate(sub_p) if not sub_second[i]}
        rows = []
        for i, p in enumerate(sub_p):
            per = persons[p]
            per.systems.add("newsletter")
            ident = vary(rng, per, cfg, email=per.alt_email if sub_second[i] else None, old=_is_old(rng, per))
            if not sub_second[i]:
                known_email.setdefault(int(p), ident.email or per.email)
            created = int(b.subscribed_at[p]) + (int(rng.integers(86400, 200 * 86400)) if sub_second[i] else 0)
            created = min(created, end_ts)
            named = rng.random() < 0.7
            rows.append({"Abonnent-ID": sub_id[i], "Anrede": {"f": "Frau", "m": "Herr"}[per.gender] if named else "",
                         "Vorname": ident.first if named else "", "Nachname": ident.last if named else "",
                         "E-Mail": ident.email or per.email,
                         "Geburtsdatum": ident.birth.strftime("%d.%m.%Y") if ident.birth and rng.random() < 0.4 else "",
                         "PLZ": ident.postcode if rng.random() < 0.6 else "", "Ort": ident.city if rng.random() < 0.6 else "",
                         "Angemeldet am": created, "Geändert am": created + int(rng.random() * (end_ts - created)),
                         "Einwilligung": "ja" if rng.random() < 0.97 else "nein"})
            truth_rows.append(("newsletter_subscribers", sub_id[i], per.pid, "|".join(ident.variations + (["second_signup"] if sub_second[i] else []))))
        w.subscribers(rows, dirt)
        e = b.emails
        keep = np.array([int(p) in first_sub for p in e["p"]], bool)
        w.email_events(_next(counters, "email_event", int(keep.sum())),
                       sub_id[np.array([first_sub[int(p)] for p in e["p"][keep]], dtype=np.int64)] if keep.any() else np.array([], str),
                       {k: v[keep] for k, v in e.items()}, bounds, dirt)

    def support(self) -> None:
        """The support desk: everyone who opened a ticket is a requester."""
        (acc_no, b, cfg, counters, dirt, end_ts, first_acc, known_email, persons, rng, truth_rows,
            w) = (self.acc_no, self.b, self.cfg, self.counters, self.dirt, self.end_ts,
            self.first_acc, self.known_email, self.persons, self.rng, self.truth_rows, self.w)
        t = b.tickets
        req_persons = np.unique(t["p"])
        rdup = req_persons[rng.random(len(req_persons)) < cfg.p_duplicate_in_system / 2]
        req_p = np.concatenate([req_persons, rdup])
        req_id = ids("ZD", _next(counters, "support", len(req_p)), len(req_p), 7)
        req_of = {}
        rows = []
        for i, p in enumerate(req_p):
            per = persons[p]
            per.systems.add("support")
            req_of.setdefault(int(p), []).append(i)
            second = i >= len(req_persons)
            ident = vary(rng, per, cfg, email=per.alt_email if second else None)
            if ident.email:
                known_email.setdefault(int(p), ident.email)
            name = f"{ident.first} {ident.last}" if rng.random() < 0.8 else f"{ident.last}, {ident.first}"
            shop_no = acc_no[first_acc[int(p)]] if int(p) in first_acc and rng.random() < 0.4 else None
            first_ticket = int(t["opened"][t["p"] == p].min())
            rows.append({"id": req_id[i], "name": name, "email": ident.email or None,
                         "phone": ident.phone or None, "external_id": shop_no,
                         "created_at": first_ticket, "updated_at": first_ticket + int(rng.integers(0, 30 * 86400))})
            truth_rows.append(("support_requesters", req_id[i], per.pid, "|".join(ident.variations + (["second_account"] if second else []))))
        w.requesters(rows, dirt)
        tick_req = np.array([req_id[req_of[int(p)][int(rng.integers(0, len(req_of[int(p)])))]] for p in t["p"]], dtype=object)
        shop_for_ticket = np.array([acc_no[first_acc[int(p)]] if int(p) in first_acc and rng.random() < 0.5 else None
                                    for p in t["p"]], dtype=object)
        w.tickets(_next(counters, "ticket", len(t["p"])), tick_req, shop_for_ticket, t, end_ts, rng, dirt)

    def sales(self) -> None:
        """The sales CRM: B2B leads; converted leads became shop customers."""
        (acc_no, b, bounds, cfg, converted, counters, dirt, end_ts, first_acc, lead_channel,
            lead_value, persons, rng, sales, truth_rows, w) = (self.acc_no, self.b, self.bounds,
            self.cfg, self.converted, self.counters, self.dirt, self.end_ts, self.first_acc,
            self.lead_channel, self.lead_value, self.persons, self.rng, self.sales, self.truth_rows,
            self.w)
        lead_p = np.flatnonzero(sales)
        lead_id = ids("L-", _next(counters, "lead", len(lead_p)), len(lead_p), 6)
        rows = []
        for i, p in enumerate(lead_p):
            per = persons[p]
            per.systems.add("sales")
            company = str(rng.choice(N.COMPANIES))
            domain = company.split()[0].lower().translate(str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss"})) + ".de"
            role = rng.random() < 0.15
            work = f"{per.first[0].lower()}.{per.last.lower().translate(str.maketrans({'ä': 'ae', 'ö': 'oe', 'ü': 'ue', 'ß': 'ss'}))}@{domain}"
            while w.work_email_owner.setdefault(work, per.pid) != per.pid:   # one mailbox, one person
                local, dom = work.split("@")
                work = f"{local}{int(rng.integers(0, 10))}@{dom}"
            ident = vary(rng, per, cfg, email=f"info@{domain}" if role else work,
                         phone=per.landline if rng.random() < 0.5 else None)
            conv = bool(converted[p])
            created = int(b.acquired_at[p]) - int(rng.integers(5, 90)) * 86400 if conv else \
                int(bounds[0] + rng.random() * (end_ts - bounds[0]))
            stage = "won" if conv else str(rng.choice(["new", "contacted", "qualified", "proposal", "lost"],
                                                      p=[0.2, 0.2, 0.2, 0.1, 0.3]))
            rows.append({"lead_id": lead_id[i], "company": company, "contact_first_name": ident.first,
                         "contact_last_name": ident.last, "contact_email": ident.email, "contact_phone": ident.phone,
                         "city": ident.city, "stage": stage,
                         "expected_value": f"{float(lead_value[p]):.2f}",
                         "source_channel": str(lead_channel[p]),
                         "created_at": max(created, int(bounds[0])),
                         "converted_at": int(b.acquired_at[p]) if conv else -1,
                         "customer_no": acc_no[first_acc[int(p)]] if conv and int(p) in first_acc else ""})
            truth_rows.append(("sales_lead_contacts", lead_id[i], per.pid, "|".join(ident.variations + (["role_email"] if role else []))))
        w.leads(rows, dirt)

    def nps(self) -> None:
        """The NPS survey: the invitation goes to an address the company holds for the person
        (shop account first, then newsletter, then support desk); the answer carries it, often a
        name."""
        acc_no, b, cfg, counters, dirt, first_acc, known_email, persons, rng, truth_rows, w = (
            self.acc_no, self.b, self.cfg, self.counters, self.dirt, self.first_acc, self.known_email,
            self.persons, self.rng, self.truth_rows, self.w)
        nps = b.nps
        resp_id = ids("R", _next(counters, "nps", len(nps["p"])), len(nps["p"]), 8)
        rows = []
        for i, p in enumerate(nps["p"]):
            per = persons[p]
            per.systems.add("nps")
            invited = known_email.get(int(p), per.email)
            ident = vary(rng, per, cfg, email=invited)
            score = int(nps["score"][i])
            bucket = "low" if score <= 6 else "mid" if score <= 8 else "high"
            rows.append({"response_id": resp_id[i], "email": invited,
                         "name": f"{ident.first} {ident.last}" if rng.random() < 0.5 else "",
                         "customer_no": acc_no[first_acc[int(p)]] if int(p) in first_acc and rng.random() < 0.3 else "",
                         "submitted_at": int(nps["t"][i]), "score": str(score),
                         "comment": str(rng.choice(N.NPS_COMMENTS[bucket]))})
            truth_rows.append(("nps_respondents", resp_id[i], per.pid, "|".join(ident.variations)))
        w.nps(rows, dirt)

    def web(self) -> None:
        """Web analytics: one cookie per person; events after login carry the customer number."""
        acc_no, b, chunk, counters, dirt, first_acc, n, start, w = (
            self.acc_no, self.b, self.chunk, self.counters, self.dirt, self.first_acc, self.n,
            self.start, self.w)
        wb = b.web
        visitor = np.char.add("V", np.char.zfill((np.arange(start, start + n) * 7919 % 100_000_003).astype(str), 9))
        logged = wb["login"] & np.array([int(p) in first_acc for p in wb["p"]], bool)
        cust_ref = np.where(logged, np.array([acc_no[first_acc[int(p)]] if int(p) in first_acc else "" for p in wb["p"]], dtype=object), None)
        w.web(chunk, _next(counters, "web", len(wb["p"])), visitor[wb["p"]], cust_ref, wb, dirt)

    def truth(self) -> None:
        """Truth: the true person behind every record, and the acquisitions per day and channel
        the spend follows."""
        b, bounds, persons, spend, truth_rows, w = (
            self.b, self.bounds, self.persons, self.spend, self.truth_rows, self.w)
        for d in range(len(b.acquired_at)):
            if b.acquired_at[d] >= 0:
                day = int((b.acquired_at[d] - bounds[0]) // 86400)
                spend[min(day, spend.shape[0] - 1), b.channel[d]] += 1
        w.truth_records(truth_rows)
        w.truth_persons(persons, b)
