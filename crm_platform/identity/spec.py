"""The declarative match spec: how records are blocked, compared, scored, linked and guarded.

A spec is YAML versioned with the project (``crm_platform/config/match_spec.yaml`` for the CRM
contacts, ``benchmarks/febrl_*.yaml`` for FEBRL). The same engine runs any table given its spec:

* ``derive`` adds columns to the records as SQL expressions (match keys, cleaned values);
* ``blocking.rules`` are equi-join keys (SQL expressions); a pair is compared when every key of at
  least one rule agrees and is not null. Keys shared by more than ``max_block_size`` records are
  skipped and reported, so no rule degrades into a cross product;
* ``comparisons`` each map a pair to one level, strongest first, like Splink's settings: the
  first level whose condition holds wins, a null on either side gives the null level (no
  evidence), anything else falls to the ``else`` level;
* ``deterministic`` rules accept a pair outright (still subject to the guards);
* ``guards`` stop over-merging: a maximum cluster size, identifiers that must not conflict inside
  one cluster, and cannot-link rules such as household protection.

A level condition is one of the kinds in ``LEVEL_KINDS`` or raw SQL over ``l.`` and ``r.``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class MatchSpecError(ValueError):
    """The match spec is not usable; the message names the place and the reason."""


def _col(c: str, side: str) -> str:
    return f"{side}.{c}"


def _level_sql(kind: str, p: dict, where: str) -> str:
    """SQL condition for one comparison level over the aliases ``l`` and ``r``."""
    col = p.get("column")
    if kind in {"exact", "jaro_winkler", "levenshtein", "damerau_levenshtein", "date_transposed",
                "prefix"} and not col:
        raise MatchSpecError(f"{where}: level kind '{kind}' needs 'column'")
    l, r = (_col(col, "l"), _col(col, "r")) if col else ("", "")
    if kind == "exact":
        return f"{l} = {r}"
    if kind == "jaro_winkler":
        return f"jaro_winkler_similarity({l}, {r}) >= {float(p['threshold'])}"
    if kind == "levenshtein":
        return f"levenshtein({l}, {r}) <= {int(p['max'])}"
    if kind == "damerau_levenshtein":
        return f"damerau_levenshtein({l}, {r}) <= {int(p['max'])}"
    if kind == "prefix":
        n = int(p["length"])
        return f"left({l}, {n}) = left({r}, {n})"
    if kind == "date_transposed":
        # one typed digit wrong or two digits swapped, or day and month exchanged
        ls, rs = f"CAST({l} AS VARCHAR)", f"CAST({r} AS VARCHAR)"
        return (f"(damerau_levenshtein({ls}, {rs}) <= 1 OR (length({ls}) = 10 AND "
                f"substr({ls}, 1, 4) = substr({rs}, 1, 4) AND substr({ls}, 6, 2) = substr({rs}, 9, 2) "
                f"AND substr({ls}, 9, 2) = substr({rs}, 6, 2)))")
    if kind == "swapped":
        a, b = p["columns"]
        return f"(l.{a} = r.{b} AND l.{b} = r.{a})"
    if kind == "sql":
        return f"({p['sql']})"
    raise MatchSpecError(f"{where}: unknown level kind '{kind}' (known: {', '.join(LEVEL_KINDS)})")


LEVEL_KINDS = ("exact", "jaro_winkler", "levenshtein", "damerau_levenshtein", "prefix",
               "date_transposed", "swapped", "sql")


@dataclass(frozen=True)
class Level:
    label: str
    sql: str


@dataclass(frozen=True)
class Comparison:
    """One field comparison. Levels are ordered strongest first; ``gamma`` counts down from
    ``len(levels)`` (strongest) to 0 (the ``else`` level); -1 is the null level."""

    name: str
    columns: tuple[str, ...]
    levels: tuple[Level, ...]
    description: str = ""
    tf_column: str | None = None     # term-frequency adjust the strongest level on this column
    null_if: str = "any"             # no evidence when any column is null on a side, or only when all are

    @property
    def tf(self) -> str:
        return f"tf_{self.name}"

    @property
    def gamma(self) -> str:
        return f"gamma_{self.name}"

    def labels(self) -> dict[int, str]:
        n = len(self.levels)
        out = {-1: "null", 0: "else"}
        out.update({n - i: lv.label for i, lv in enumerate(self.levels)})
        return out

    def case_sql(self, alias: bool = True) -> str:
        glue = " OR " if self.null_if == "any" else " AND "
        nulls = glue.join(f"(l.{c} IS NULL OR r.{c} IS NULL)" for c in self.columns)
        n = len(self.levels)
        whens = " ".join(f"WHEN {lv.sql} THEN {n - i}" for i, lv in enumerate(self.levels))
        return f"CASE WHEN {nulls} THEN -1 {whens} ELSE 0 END::TINYINT" + (f" AS {self.gamma}" if alias else "")


@dataclass(frozen=True)
class Rule:
    name: str
    sql: str


@dataclass(frozen=True)
class BlockingRule:
    name: str
    keys: tuple[str, ...]
    max_block_size: int | None = None      # this rule's own limit (default: the spec's)


@dataclass(frozen=True)
class Context:
    """Pairs in which some fields agree for another reason than being one person (a household
    shares surname, address and landline). Such a pair is scored by a model of its own, fitted by
    EM on the context's pairs with m *and* u learnt there: only ``comparisons`` count as evidence
    (the shared fields do not), and how often each level occurs among the context's non-matches
    (twins share a birth date far more often than two random people) is learnt from the data."""
    name: str
    sql: str
    comparisons: tuple[str, ...]


@dataclass(frozen=True)
class Guards:
    max_cluster_size: int = 50
    conflicting_ids: tuple[str, ...] = ()
    one_record_per_source: bool = False     # linking files that are each free of duplicates
    # fields whose different values join one cluster only through a link between two records that
    # hold them (a birth-date typo the model matched), never through a record without one
    direct_evidence_for: tuple[str, ...] = ()
    cannot_link: tuple[Rule, ...] = ()


@dataclass(frozen=True)
class MatchSpec:
    name: str
    unique_id: str
    source_column: str
    link_type: str
    derive: dict[str, str]
    blocking: tuple[BlockingRule, ...]
    max_block_size: int
    comparisons: tuple[Comparison, ...]
    deterministic: tuple[Rule, ...]
    guards: Guards
    link_threshold: float
    review_threshold: float
    training_rules: tuple[str, ...] = ()
    compare_backend: str = "duckdb"          # or "recordlinkage": its Compare API with spec features
    prior_match_probability: float | None = None
    u_sample_pairs: int = 1_000_000
    em_max_iterations: int = 100
    min_labels_per_class: int = 25
    seed: int = 42
    lookups: dict[str, Path] = field(default_factory=dict)
    path: Path | None = None
    contexts: tuple[Context, ...] = ()

    def comparison(self, name: str) -> Comparison:
        for c in self.comparisons:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def gammas(self) -> list[str]:
        return [c.gamma for c in self.comparisons]

    @property
    def pattern_keys(self) -> list[str]:
        """What identifies a pattern: the comparison levels and the context ('' for none)."""
        return [*self.gammas, "context"]

    def pair_filter(self, l: str = "l", r: str = "r", uid: str | None = None, src: str | None = None) -> str:
        """Which ordered pairs the link type allows (each unordered pair once)."""
        uid, src = uid or self.unique_id, src or self.source_column
        if self.link_type == "link_only":
            return f"{l}.{src} < {r}.{src}"
        return f"({l}.{src} < {r}.{src} OR ({l}.{src} = {r}.{src} AND {l}.{uid} < {r}.{uid}))" \
            if self.link_type == "link_and_dedupe" else f"{l}.{uid} < {r}.{uid}"


def _need(d: dict, key: str, where: str):
    if key not in d:
        raise MatchSpecError(f"{where}: '{key}' is required")
    return d[key]


def parse_spec(raw: dict, path: Path | None = None) -> MatchSpec:
    where = str(path or "match spec")
    if not isinstance(raw, dict):
        raise MatchSpecError(f"{where}: expected a mapping at the top level")
    link_type = raw.get("link_type", "dedupe_only")
    if link_type not in {"dedupe_only", "link_only", "link_and_dedupe"}:
        raise MatchSpecError(f"{where}: link_type must be dedupe_only, link_only or link_and_dedupe")
    blk = _need(raw, "blocking", where)
    rules = []
    for i, r in enumerate(_need(blk, "rules", f"{where}: blocking")):
        name = _need(r, "name", f"{where}: blocking rule {i + 1}")
        keys = _need(r, "keys", f"{where}: blocking rule '{name}'")
        if not keys:
            raise MatchSpecError(f"{where}: blocking rule '{name}' has no keys")
        limit = r.get("max_block_size")
        if limit is not None and (not isinstance(limit, int) or limit < 2):
            raise MatchSpecError(f"{where}: blocking rule '{name}': max_block_size must be an integer >= 2")
        rules.append(BlockingRule(name, tuple(str(k) for k in keys), limit))
    comps = []
    for i, c in enumerate(_need(raw, "comparisons", where)):
        cw = f"{where}: comparison {c.get('name', i + 1)}"
        name = _need(c, "name", cw)
        if not _NAME.match(name):
            raise MatchSpecError(f"{cw}: name must be lower_snake_case")
        cols = tuple(c.get("columns") or ([c["column"]] if c.get("column") else []))
        if not cols:
            raise MatchSpecError(f"{cw}: 'column' or 'columns' is required")
        levels = []
        for lv in _need(c, "levels", cw):
            lw = f"{cw}, level {lv.get('label', '?')}"
            kind = _need(lv, "kind", lw)
            params = {"column": cols[0], **lv}
            levels.append(Level(_need(lv, "label", lw), _level_sql(kind, params, lw)))
        if not levels:
            raise MatchSpecError(f"{cw}: at least one level is required")
        null_if = c.get("null_if", "any")
        if null_if not in ("any", "all"):
            raise MatchSpecError(f"{cw}: null_if must be any or all")
        comps.append(Comparison(name, cols, tuple(levels), c.get("description", ""),
                                c.get("term_frequency_column"), null_if))
    det = tuple(Rule(_need(d, "name", f"{where}: deterministic"), _need(d, "sql", f"{where}: deterministic"))
                for d in raw.get("deterministic", []) or [])
    g = raw.get("guards", {}) or {}
    guards = Guards(
        max_cluster_size=int(g.get("max_cluster_size", 50)),
        conflicting_ids=tuple(g.get("conflicting_ids", []) or []),
        one_record_per_source=bool(g.get("one_record_per_source", False)),
        direct_evidence_for=tuple(g.get("direct_evidence_for", []) or []),
        cannot_link=tuple(Rule(_need(d, "name", f"{where}: cannot_link"), _need(d, "sql", f"{where}: cannot_link"))
                          for d in g.get("cannot_link", []) or []),
    )
    unknown = set(raw.get("training_rules", []) or []) - {r.name for r in rules}
    if unknown:
        raise MatchSpecError(f"{where}: training_rules name unknown blocking rules {sorted(unknown)}")
    backend = raw.get("compare_backend", "duckdb")
    if backend not in {"duckdb", "recordlinkage"}:
        raise MatchSpecError(f"{where}: compare_backend must be duckdb or recordlinkage")
    names = {c.name for c in comps}
    contexts = []
    for i, cx in enumerate(raw.get("contexts", []) or []):
        cw = f"{where}: context {cx.get('name', i + 1)}"
        listed = tuple(_need(cx, "comparisons", cw))
        if set(listed) - names:
            raise MatchSpecError(f"{cw}: names unknown comparisons {sorted(set(listed) - names)}")
        contexts.append(Context(_need(cx, "name", cw), _need(cx, "sql", cw), listed))
    unknown = set(raw.get("prior") or {}) - {"match_probability"}
    if unknown:
        raise MatchSpecError(f"{where}: prior knows only 'match_probability' (a fixed match rate), not "
                             f"{sorted(unknown)}; without it the match rate is estimated by EM")
    th = raw.get("thresholds", {}) or {}
    link_t, review_t = float(th.get("link", 0.95)), float(th.get("review", 0.5))
    if not 0 < review_t <= link_t < 1:
        raise MatchSpecError(f"{where}: thresholds need 0 < review <= link < 1")
    raw = _resolve_lookups(raw, path.parent if path else Path.cwd())
    lookups = {k: Path(v) for k, v in (raw.get("lookups", {}) or {}).items()}
    for k, p in lookups.items():
        if not p.exists():
            raise MatchSpecError(f"{where}: lookup '{k}' file {p.name} does not exist")
    return MatchSpec(
        name=_need(raw, "name", where), unique_id=_need(raw, "unique_id", where),
        source_column=raw.get("source_column", _need(raw, "unique_id", where)), link_type=link_type,
        derive=dict(raw.get("derive", {}) or {}), blocking=tuple(rules),
        max_block_size=int(blk.get("max_block_size", 500)), comparisons=tuple(comps),
        deterministic=det, guards=guards, link_threshold=link_t, review_threshold=review_t,
        training_rules=tuple(raw.get("training_rules", []) or []),
        compare_backend=backend,
        prior_match_probability=(raw.get("prior") or {}).get("match_probability"),
        u_sample_pairs=int(raw.get("u_sample_pairs", 1_000_000)),
        em_max_iterations=int(raw.get("em_max_iterations", 100)),
        min_labels_per_class=int(raw.get("min_labels_per_class", 25)),
        seed=int(raw.get("seed", 42)), lookups=lookups, path=path, contexts=tuple(contexts))


PACKAGE_CONFIG = Path(__file__).resolve().parents[1] / "config"
# lists whose items have names: ``extends`` merges them item by item
NAMED_LISTS = {("blocking", "rules"), ("comparisons",), ("deterministic",), ("guards", "cannot_link"), ("contexts",)}


def _resolve_lookups(raw: dict, base: Path) -> dict:
    """Lookup paths made absolute against the folder of the file that names them
    (``package:<file>`` names a file shipped in crm_platform/config)."""
    look = raw.get("lookups")
    if isinstance(look, dict):
        raw = {**raw, "lookups": {k: str(PACKAGE_CONFIG / v[len("package:"):]) if str(v).startswith("package:")
                                  else str((base / v).resolve()) for k, v in look.items()}}
    return raw


def merge(base: dict, over: dict, at: tuple = ()) -> dict:
    """``over`` laid onto ``base``: mappings merge key by key, the named lists (blocking rules,
    comparisons, deterministic rules, cannot-link rules) item by item - an item of the same name
    replaces the base's, a new one is added, ``{name: x, drop: true}`` removes x - and any other
    value replaces the base's."""
    out = dict(base)
    for k, v in over.items():
        here = (*at, k)
        if here in NAMED_LISTS and isinstance(v, list) and isinstance(base.get(k), list):
            items = {i.get("name"): i for i in base[k] if isinstance(i, dict)}
            order = [i.get("name") for i in base[k] if isinstance(i, dict)]
            for item in v:
                if not isinstance(item, dict) or "name" not in item:
                    raise MatchSpecError(f"{'.'.join(here)}: every item needs a 'name' to be merged by")
                name = item["name"]
                if item.get("drop"):
                    if name not in items:
                        raise MatchSpecError(f"{'.'.join(here)}: cannot drop '{name}': the base spec has "
                                             f"no such item (it has {', '.join(map(str, order))})")
                    items.pop(name)
                    order.remove(name)
                    continue
                if name not in items:
                    order.append(name)
                items[name] = item
            out[k] = [items[n] for n in order]
        elif isinstance(v, dict) and isinstance(base.get(k), dict):
            out[k] = merge(base[k], v, here)
        else:
            out[k] = v
    if not at:
        # what names a dropped item forgets it too: a context its comparison, training a rule
        kept = {c.get("name") for c in out.get("comparisons") or []}
        out["contexts"] = [{**cx, "comparisons": [n for n in cx.get("comparisons", []) if n in kept]}
                           for cx in out.get("contexts") or []]
        rules = {r.get("name") for r in (out.get("blocking") or {}).get("rules") or []}
        if "training_rules" in out and "training_rules" not in over:
            out["training_rules"] = [r for r in out["training_rules"] or [] if r in rules]
    return out


def _read(path: Path, seen: tuple[Path, ...] = (), derived: dict | None = None) -> dict:
    """The YAML of a spec; ``extends: other.yaml`` starts from another spec (``extends: derived``
    from the spec derived from the data) and merges this one onto it (``merge``)."""
    if path in seen:
        raise MatchSpecError(f"{path}: 'extends' loops back to itself")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise MatchSpecError(f"{path}: not valid YAML: {e}") from e
    except OSError as e:
        raise MatchSpecError(f"{path}: cannot read: {e.strerror}") from e
    if not isinstance(raw, dict):
        raise MatchSpecError(f"{path}: expected a mapping at the top level")
    raw = _resolve_lookups(raw, path.parent)
    base = raw.pop("extends", None)
    if base == "derived":
        if derived is None:
            raise MatchSpecError(f"{path}: 'extends: derived' needs the data to derive a spec from")
        raw = merge(_resolve_lookups(derived, PACKAGE_CONFIG), raw)
    elif base:
        raw = merge(_read((path.parent / base).resolve(), (*seen, path), derived), raw)
    return raw


def read_spec(path: str | Path, derived: dict | None = None) -> dict:
    """The YAML mapping of a spec file with what it ``extends`` merged in (not yet parsed)."""
    return _read(Path(path).resolve(), derived=derived)


def parse_derived(raw: dict) -> MatchSpec:
    """A spec mapping made by the platform (``derive``): its lookups name shipped files."""
    return parse_spec(_resolve_lookups(raw, PACKAGE_CONFIG))


def load_spec(path: str | Path, derived: dict | None = None) -> MatchSpec:
    """The spec in ``path``; ``derived`` is the spec derived from the data, for ``extends: derived``."""
    path = Path(path).resolve()
    return parse_spec(_read(path, derived=derived), path)
