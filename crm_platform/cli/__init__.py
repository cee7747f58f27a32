"""``crm-platform``: generate demo data, materialize the asset graph, summarize what was built."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import date
from pathlib import Path


from crm_platform.core import settings
from crm_platform.core.days import newest_data_day
from crm_platform.cli.runs import (SelectionError, _partitions_moved, job_runner, latest_data_day, materialize,
                               materialize_selection, prepare_dagster_home, release_dead_runs)
from crm_platform.cli.summary import summary_lines

__all__ = ["job_runner", "latest_data_day", "main", "materialize", "prepare_dagster_home", "release_dead_runs"]

# exit codes of materialize and backfill (docs/sources.md "The command line")
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _generate(args) -> None:
    from crm_platform.demo import GeneratorConfig, generate

    home = Path(args.home).resolve() if args.home else settings.home()
    cfg = GeneratorConfig(customers=args.customers, seed=args.seed,
                          end_date=date.fromisoformat(args.end_date),
                          dirty_rate=args.dirty_rate, delivery_days=args.delivery_days)
    summary = generate(cfg, home)
    print(f"generated {args.customers} customers (seed {args.seed}) in {summary.seconds:.1f}s "
          f"under {home / 'landing'}")
    for name, rows in sorted(summary.rows.items()):
        print(f"  {name:<26} {rows:>12,}")


def _materialize(args) -> int:
    try:
        # `demo` runs everything: no selection
        select = getattr(args, "select", None)
        show = {"progress": True, "started": getattr(args, "started", None)}
        results = materialize_selection(select, getattr(args, "partition", None), **show) if select else \
            materialize(history_days=args.days, **show)
    except SelectionError as e:
        print(f"crm-platform materialize: {e}", file=sys.stderr)
        return EXIT_USAGE
    print("\n".join(summary_lines(results)))
    if getattr(args, "started", None):
        import time

        from crm_platform.cli.progress import clock
        print(f"the demo took {clock(time.monotonic() - args.started)}")
    return EXIT_OK if all(r.success for r in results) else EXIT_FAILED


def _backfill(args) -> int:
    """One run over a range of days (every daily asset has a single-run backfill policy)."""
    from sensors.days import range_tags

    start, end = date.fromisoformat(args.start), date.fromisoformat(args.end)
    if end < start:
        print(f"--to {end} is before --from {start}", file=sys.stderr)
        return 2
    newest = newest_data_day(settings.paths().last_day_file)
    if newest is None or end > newest:
        print(f"--to {end} is after the newest day with data ({newest or 'none yet: run the core refresh first'}); "
              "the daily partitions end there", file=sys.stderr)
        return 2
    result = job_runner(fresh=_partitions_moved(), progress=True)(args.job, tags=range_tags(start, end))
    print("\n".join(summary_lines([result])))
    return 0 if result.success else 1


def _explain(args) -> int:
    from crm_platform.core import warehouse
    from crm_platform.identity.resolve import explain

    con = warehouse.connect(settings.paths().warehouse, read_only=True)
    try:
        print("\n".join(explain(con, args.left, args.right)))
    finally:
        con.close()
    return 0


def _match_spec(args) -> int:
    """Print the match spec the platform uses: derived from the staged contacts (or, before any
    contact is staged, the one for data that fills every match column), or the user's file merged
    onto it."""
    import yaml

    from crm_platform.core import warehouse
    from crm_platform.identity import derive
    from crm_platform.identity.spec import MatchSpecError, read_spec

    p = settings.paths()
    derived, where = derive.derive(derive.for_columns(derive.MATCH_COLUMNS)), "data that fills every match column"
    if p.warehouse.exists():
        con = warehouse.reader(p.warehouse)
        try:
            if warehouse.table_exists(con, "staging.contacts"):
                prof = derive.profile(con)
                derived, where = derive.derive(prof), f"staging.contacts ({prof.records:,} records)"
        finally:
            con.close()
    own = settings.match_spec_file()
    try:
        spec = read_spec(own, derived=derived) if own else derived
    except MatchSpecError as e:
        print(f"crm-platform: the match spec is not usable: {e}", file=sys.stderr)
        return EXIT_USAGE
    print(f"# match spec derived from {where}" + (f", with {own.name} merged onto it" if own else "")
          + "\n# save it, edit it and point CRM_PLATFORM_MATCH_SPEC at it (or start a file with "
            "'extends: derived' and name only what differs); see docs/identity.md")
    print(yaml.safe_dump(spec, sort_keys=False, width=110, allow_unicode=True), end="")
    return 0


def _subject(args) -> tuple[str, str, dict]:
    """(identifier type, identifier, scope) of an erase or export: an e-mail address, or a customer
    id, or both (the e-mail address several customers hold, and the one meant)."""
    scope = {"all_matching": True} if args.all_matching else {}
    if args.email:
        if args.customer_id:
            scope = {"customer_id": args.customer_id}
        return "email", args.email, scope
    return "customer_id", args.customer_id, scope


def _refused(con, rid: str, kind: str, itype: str, actor: str, e) -> int:
    from crm_platform.governance import requests

    requests.record(con, rid, kind, itype, "refused", str(e), actor)
    print(f"refused: {e}", file=sys.stderr)
    return 4


def _erase(args) -> int:
    """Erase a person now; prints the receipt's counts (never the identifier)."""
    from crm_platform.core import audit
    from crm_platform.governance import erasure, requests
    from crm_platform.governance.subject import AmbiguousSubject, SubjectNotFound
    from crm_platform.ingest.sources import load_sources

    p, rid, actor = settings.paths(), erasure.new_request_id(), audit.default_actor()
    itype, ident, scope = _subject(args)
    cfg = load_sources(settings.sources_file())
    connect = lambda: _writer(p)  # noqa: E731
    if args.dry_run:
        con = connect()
        try:
            s = erasure.plan(con, p, cfg, itype, ident, **scope)
        except (SubjectNotFound, AmbiguousSubject) as e:
            print(f"nothing would be erased: {e}")
            return 3 if isinstance(e, SubjectNotFound) else 4
        finally:
            con.close()
        found = erasure.searched(s)
        print(f"would erase {found['customer_ids']} customer(s) with {found['contact_records']} source record(s) in "
              f"{', '.join(sorted({k.split(':', 1)[0] for k in s.contact_keys})) or 'no system'}; searched: "
              + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in found.items() if isinstance(v, int) and v))
        _print_candidates(s.candidates)
        return 0
    try:
        receipt = erasure.erase(connect, p, cfg, itype, ident, request_id=rid, actor=actor,
                                compact_warehouse=not args.no_compact, **scope)
    except SubjectNotFound as e:
        print(f"nothing to erase: {e}")
        return 3
    except erasure.ErasureRefused as e:
        print(e)
        return 5
    except AmbiguousSubject as e:
        con = connect()
        try:
            return _refused(con, rid, "erase", itype, actor, e)
        finally:
            con.close()
    v = receipt["verification"]
    con = connect()
    try:
        requests.record(con, rid, "erase", itype, "done" if v["passed"] else "failed",
                        f"receipt governance/receipts/{rid}.json", actor)
    finally:
        con.close()
    print(f"erasure {rid}: {receipt['customers_erased']} customer(s), {receipt['source_records_erased']} source "
          f"record(s) in {', '.join(receipt['source_systems']) or 'no system'}; {receipt['rows_removed_total']:,} rows "
          f"removed from {len(receipt['rows_removed'])} tables, {len(receipt['files_changed'])} file(s) changed")
    print(f"verification: {v['tables_scanned']} tables ({v['text_columns_scanned']} text columns) and "
          f"{v['files_scanned']} files scanned for the {v['identifiers_scanned_for']} identifiers linked to the "
          "person: " + ("no trace of them left" if v["passed"] else f"{v['occurrences']} trace(s) left in "
                        + ", ".join(f["where"] for f in v["found"][:10])))
    kept = receipt["shared_identifiers_kept"]
    print("not reached: records never linked to these identifiers"
          + (f"; {kept} e-mail address(es) or phone number(s) someone else holds too were kept" if kept else ""))
    _print_candidates(receipt["candidates"])
    print(f"receipt: {erasure.receipts_dir(p) / (rid + '.json')}")
    return 0 if v["passed"] else 1


def _print_candidates(candidates: list[dict]) -> None:
    """Records not linked to the person with the same name and birth date, postcode or city."""
    if not candidates:
        print("no other record with the same name and birth date, postcode or city")
        return
    print(f"{len(candidates)} record(s) not linked to the person have the same name and "
          "birth date, postcode or city - if one is the same person, erase it with --customer-id:")
    for c in candidates:
        print(f"  {c['source_system']} record of customer {c['customer_id'] or '(not resolved yet)'}: "
              f"same {', '.join(c['agreeing'])}")


def _export(args) -> int:
    from crm_platform.core import audit
    from crm_platform.governance import erasure, export, requests
    from crm_platform.governance.subject import AmbiguousSubject, SubjectNotFound
    from crm_platform.ingest.sources import load_sources

    p, rid, actor = settings.paths(), erasure.new_request_id(), audit.default_actor()
    itype, ident, scope = _subject(args)
    con = _writer(p)
    try:
        path = export.export(con, p, load_sources(settings.sources_file()), itype, ident, request_id=rid,
                             actor=actor, **scope)
        requests.record(con, rid, "export", itype, "done", f"export {path.relative_to(p.home).as_posix()}", actor)
    except SubjectNotFound as e:
        print(f"nothing to export: {e}")
        return 3
    except AmbiguousSubject as e:
        return _refused(con, rid, "export", itype, actor, e)
    finally:
        con.close()
    print(f"export {rid}: {path}")
    return 0


def _writer(p: settings.Paths):
    """The warehouse for writing; a run's step holding it is waited for (up to the lock wait)."""
    from crm_platform.core import warehouse

    try:
        return warehouse.connect(p.warehouse, on_wait=lambda why: print(
            f"the warehouse is in use by a running job; waiting up to {settings.lock_wait_seconds():g} s "
            f"(CRM_PLATFORM_LOCK_WAIT) ...", file=sys.stderr, flush=True))
    except warehouse.WarehouseBusy as e:
        raise SystemExit(f"{e}; try again when the run has finished, or drop a request file into "
                         f"{p.requests} for the subject_requests sensor") from None


def _demo(args) -> int:
    import time

    args.started = time.monotonic()
    print(f"> generate: {args.customers} customers (seed {args.seed})", file=sys.stderr, flush=True)
    _generate(args)
    return _materialize(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="crm-platform", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, fn, help_ in (("generate", _generate, "write demo landing files and truth"),
                            ("demo", _demo, "generate, materialize everything, summarize")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--customers", type=int, default=10000)
        p.add_argument("--seed", type=int, default=42)
        p.add_argument("--end-date", default="2026-09-30", help="last day of generated activity")
        p.add_argument("--dirty-rate", type=float, default=0.002,
                       help="share of rows per file with an injected data error")
        p.add_argument("--delivery-days", type=int, default=0,
                       help="hold back what the last N days created as a delivery under deliveries/<end date>/")
        p.add_argument("--home", help="output folder (default: $CRM_PLATFORM_HOME)")
        if name == "demo":
            p.add_argument("--days", type=int, default=14, help="daily partitions before the last day to compute "
                                                                "too (default 14)")
        p.set_defaults(fn=fn)
    m = sub.add_parser("materialize", help="materialize every asset and run every check (or a selection)",
                       description="Without --select: the core refresh, the models, then the daily assets of "
                                   "the last day with data and the --days before it, as the schedules run "
                                   "them. Exit 0: every run succeeded; 1: a run failed (a step's error or a "
                                   "blocking check; the summary says which); 2: bad arguments or sources.")
    m.add_argument("--select", help="a Dagster asset selection: group:identity, +core/customers, "
                                    "key:ml/churn_scores, ... (daily assets run for the last day with data)")
    m.add_argument("--partition", help="with --select: the day of the daily assets (default: the last day with data)")
    m.add_argument("--days", type=int, default=14, help="daily partitions before the last day to compute too "
                                                        "(default 14: a baseline for the KPI alerts)")
    m.set_defaults(fn=_materialize)
    b = sub.add_parser("backfill", help="materialize the daily assets of a range of days in one run")
    b.add_argument("--from", dest="start", required=True, help="first day, e.g. 2026-09-01")
    b.add_argument("--to", dest="end", required=True, help="last day, e.g. 2026-09-30")
    b.add_argument("--job", default="daily_snapshots", help="a day-partitioned job (default daily_snapshots)")
    b.set_defaults(fn=_backfill)
    e = sub.add_parser("explain", help="why two contact records are (not) the same customer")
    e.add_argument("left", help="contact key, e.g. shop:K00000123")
    e.add_argument("right", help="contact key, e.g. newsletter:NL-0000456")
    e.set_defaults(fn=_explain)
    ms = sub.add_parser("match-spec", help="print the match spec identity resolution uses (derived from the data)")
    ms.set_defaults(fn=_match_spec)
    for name, fn, help_ in (("erase", _erase, "erase a person from every table and file, verify, write a receipt"),
                            ("export", _export, "write everything held about a person as one JSON document")):
        g = sub.add_parser(name, help=help_, description=(
            "Name the person by --email or --customer-id. An e-mail address several customers hold is "
            "refused (exit 4, with their number) unless --customer-id names the one meant or "
            "--all-matching takes every one of them; the refusal is recorded in the audit log."))
        g.add_argument("--email")
        g.add_argument("--customer-id")
        g.add_argument("--all-matching", action="store_true",
                       help="with --email: every customer holding the address (a shared address reaches them all)")
        if name == "erase":
            g.add_argument("--no-compact", action="store_true",
                           help="skip rewriting the warehouse file (deleted values may linger in free blocks)")
            g.add_argument("--dry-run", action="store_true",
                           help="change nothing: say what would be erased and list the records not linked "
                                "to the person with the same name and birth date, postcode or city")
        g.set_defaults(fn=fn)
    args = parser.parse_args(argv)
    if args.command in ("erase", "export"):
        if not (args.email or args.customer_id):
            parser.error(f"{args.command}: give --email or --customer-id")
        if args.all_matching and (args.customer_id or not args.email):
            parser.error(f"{args.command}: --all-matching goes with --email alone")
    if getattr(args, "home", None):
        os.environ["CRM_PLATFORM_HOME"] = str(Path(args.home).resolve())
    from crm_platform.ingest.sources import SourceConfigError

    try:
        return args.fn(args) or 0
    except SourceConfigError as e:          # the mapping says where; a traceback would not help
        print(f"crm-platform: the source declaration is not usable: {e}", file=sys.stderr)
        return EXIT_USAGE

