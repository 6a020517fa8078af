"""crmhub's matcher against Splink 4 (DuckDB backend) on the same records, in one run.

Both sides deduplicate the same canonical records: the multi-source synthetic people of
``benchmarks/dedupe.py --data world`` (several sources, households, common names, typos,
nicknames), mapped once by the ``people_file`` mapping and pickled, so that both see
byte-identical inputs. Each side runs in its own child process (this script again, with
``--side``), one after the other, so that its peak memory is its own and no cache of one run
warms the next. Accuracy is measured against the ground truth (``person_key``) the same way
for both, from the final clusters: the pairs of records that share a predicted cluster
against the pairs that share a person (pairwise precision, recall, F1: ``pairwise_scores``
of benchmarks/dedupe.py, one function for both sides).

Usage (Splink and DuckDB come with the ``bench`` extra; keep them out of the dev venv)::

    python3 -m venv /work/venv-bench && . /work/venv-bench/bin/activate
    pip install -e '.[bench]'
    python benchmarks/dedupe_vs_splink.py --records 100000 --runs 3

Timed, per side, from the canonical records in memory to the final clusters, training
included: crmhub's ``match_records`` with the default ``MatchSettings``, as the hub and
``benchmarks/dedupe.py`` run it (match keys -> blocking -> comparison -> training ->
scoring -> clustering); Splink: the same ``match_frame`` normalisation -> a pandas
DataFrame -> ``Linker`` -> prior, u, EM -> ``predict`` ->
``cluster_pairwise_predictions_at_threshold`` (the clusters read back into pandas).
Loading and mapping the raw rows is not timed. DuckDB runs with its default thread count
(every core); crmhub's string comparisons also use every core (rapidfuzz), the rest of it
one.

Comparable settings, and where the two sides differ:

- **inputs**: Splink gets the values crmhub matches on, from crmhub's ``match_frame``:
  case- and accent-folded first and last name (split from a full name where only that is
  known), ISO birth date, email in matching form (provider rules), phone digits (E.164
  without the ``+``), postcode (upper case, no spaces), folded street line and city, folded
  company. crmhub compares every email and phone of a record; Splink gets the **first**
  one of each (the count of records with more is printed).
- **blocking**: crmhub's rules (``MatchSettings().rules``: its ``DEFAULT_RULES``),
  translated field by field to Splink columns when the script starts
  (:data:`FIELD_COLUMNS`), so the two follow each other: at the time of writing email,
  phone, first name + surname, surname Metaphone + first-name Metaphone (crmhub's
  ``last_phonetic`` / ``first_phonetic`` columns: DuckDB has no phonetic function),
  postcode + the first 3 letters of the surname, birth date + first initial. crmhub skips
  blocks of more than ``max_block_size`` (500) records; Splink gets the same cap
  (``--splink-block-cap``, default crmhub's): each rule blocks on one key column built with
  the DataFrame, null where the key's block is larger. ``--splink-block-cap 0`` runs
  Splink's plain ``block_on`` rules on the columns instead, uncapped. Differences: crmhub's
  name rule uses the nickname root of the first name (Splink: the first name as written),
  and rules on a field Splink has no column for (identifiers: the data has none) are left
  out; both are printed.
- **comparisons**: first name and surname ``cl.NameComparison`` (exact level with term
  frequencies, Jaro-Winkler 0.92 / 0.88 / 0.7), ``cl.DateOfBirthComparison``, email
  ``cl.ExactMatch`` (see below), phone ``cl.LevenshteinAtThresholds(1)``, company
  ``cl.JaroWinklerAtThresholds(0.92, 0.85)``, and address as one custom comparison (street
  and postcode / near street and postcode / postcode / street and city / city, postcode and
  city with term frequencies): street, postcode and city are one fact, as in crmhub's
  ``address_comparison`` (Splink's ``PostcodeComparison`` parses UK postcodes only; the data
  spans 8 countries). crmhub's own comparisons add levels Splink's library does not have
  (nicknames, swapped names, initials, transposed dates, house numbers), term frequencies
  of the surname given the first name, and a household class.
- **email**: crmhub's email comparison is exact only (a shared address or none), so Splink's
  is too by default. ``--splink-email library`` uses ``cl.EmailComparison`` instead, whose
  Jaro-Winkler levels on the whole address and on the user name are not independent of the
  names when addresses are made of names (``john.smith1@...`` and ``jsmith@...``): namesakes
  then reach p >= 0.95 on name + "similar user name" alone, and connected components chain
  them into large clusters (on this data Splink's cluster precision falls to 0.10 at 10k
  records and 0.35 at 100k).
- **training**, as in Splink's tutorials: the prior by ``estimate_probability_two_random_
  records_match`` over deterministic rules (first name + surname + birth date; email) with
  an assumed recall of 0.7; u from ``--u-max-pairs`` random pairs (crmhub: 2M); m by EM,
  without term frequencies, in one session per crmhub ``TRAINING_SESSIONS`` rule, blocked
  on the same fields (first name + surname; email; birth date + surname Metaphone). crmhub
  fits its prior by a fixed point over all pairs instead of an assumed recall, and learns a
  household class.
- **clustering** at ``--threshold`` (0.95) on both sides: Splink's connected components;
  crmhub's union-find, whose bridge guard joins two multi-record clusters only on two links.

Printed: a side-by-side table, the speed ratio (Splink seconds / crmhub seconds, medians
of ``--runs``), crmhub's pair-based figures for reference, and one JSON line per run. Only
counts are printed, never a record's values.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/dedupe.py

from crmhub.dedupe.blocking import BlockingRule
from crmhub.dedupe.normalize import match_frame
from crmhub.dedupe.pipeline import MatchSettings, match_records
from crmhub.dedupe.training import TRAINING_SESSIONS
from crmhub.mapping import load_mapping
from dedupe import _rows, pairwise_scores

SIDES = ("crmhub", "splink")
IntArray = npt.NDArray[np.int64]


def load_records(records: int, seed: int) -> tuple[list[Any], IntArray]:
    """The ``world`` rows of benchmarks/dedupe.py mapped to canonical Person records, with
    each record's true person as an integer code."""
    mapping = load_mapping("people_file").stream("people")
    people, keys = [], []
    for row in _rows("world", records, seed):
        record = mapping.apply(row, source="bench", stream="people", region="GB").record
        if record is not None:
            people.append((len(people), record))
            keys.append(row["person_key"])
    _, truth = np.unique(np.asarray(keys, dtype=object), return_inverse=True)
    return people, truth.astype(np.int64)


def _pairs(sizes: IntArray) -> int:
    return int((sizes * (sizes - 1) // 2).sum())


def cluster_metrics(labels: npt.ArrayLike, truth: IntArray) -> dict[str, Any]:
    """The cluster-based measure both sides are scored by: pairwise precision, recall and F1
    of the pairs the clusters imply (benchmarks/dedupe.py's ``pairwise_scores``), and counts
    of the clusters."""
    labels = np.asarray(labels)
    precision, recall, f1 = pairwise_scores(labels, truth)
    _, predicted = np.unique(labels, return_inverse=True)
    cluster_sizes = np.bincount(predicted)
    joint = np.unique(predicted.astype(np.int64) * (int(truth.max()) + 1) + truth)
    people_per_cluster = np.bincount(joint // (int(truth.max()) + 1))
    return {
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "predicted_pairs": _pairs(cluster_sizes),
        "true_pairs": _pairs(np.unique(truth, return_counts=True)[1]),
        "clusters": len(cluster_sizes),
        "multi_record_clusters": int((cluster_sizes > 1).sum()),
        "mixed_clusters": int((people_per_cluster > 1).sum()),
    }


def run_crmhub(people: list[Any], truth: IntArray, args: argparse.Namespace) -> dict[str, Any]:
    """crmhub's pipeline as the hub and benchmarks/dedupe.py run it: ``match_records``."""
    started = time.perf_counter()
    result = match_records(people, MatchSettings(auto_merge=args.threshold), seed=args.seed)
    seconds = time.perf_counter() - started

    # Rows are records sorted by id, and ids are positions: row i is record i.
    pairs = result.pairs
    # Pair-based figures, as benchmarks/dedupe.py reports them (for reference only).
    same = truth[pairs.left] == truth[pairs.right]
    true_pairs = _pairs(np.unique(truth, return_counts=True)[1])
    linked = pairs.probability >= args.threshold
    hits = int((linked & same).sum())
    precision, recall = hits / max(int(linked.sum()), 1), hits / max(true_pairs, 1)
    return {
        "records": len(result.frame),
        "candidate_pairs": len(pairs),
        "oversized_blocks": sum(result.blocking.oversized_blocks.values()),
        "links": int(linked.sum()),
        "seconds": round(seconds, 2),
        "stage_seconds": {k: round(v, 2) for k, v in result.seconds.items()},
        "cluster_based": cluster_metrics(result.labels, truth),
        "pair_based": {
            "blocking_recall": round(int(same.sum()) / max(true_pairs, 1), 4),
            "precision": round(precision, 4),
            "recall": round(recall, 4),
            "f1": round(2 * precision * recall / max(precision + recall, 1e-12), 4),
        },
    }


def _splink_settings(args: argparse.Namespace) -> tuple[Any, list[Any]]:
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl
    from splink import SettingsCreator, block_on

    if args.splink_block_cap:  # on the capped key columns of _block_keys
        rules = [block_on(f"block_{name}") for name in BLOCKING_RULES]
    else:  # crmhub's rules (see the module docstring), as Splink expressions
        rules = [block_on(*splink_sql(fields)) for fields in BLOCKING_RULES.values()]
    address = cl.CustomComparison(
        output_column_name="address",
        comparison_levels=[
            cll.And(cll.NullLevel("street"), cll.NullLevel("postcode"), cll.NullLevel("city")),
            cll.And(cll.ExactMatchLevel("street"), cll.ExactMatchLevel("postcode")),
            cll.And(cll.LevenshteinLevel("street", 2), cll.ExactMatchLevel("postcode")),
            cll.ExactMatchLevel("postcode", term_frequency_adjustments=True),
            cll.And(cll.ExactMatchLevel("street"), cll.ExactMatchLevel("city")),
            cll.ExactMatchLevel("city", term_frequency_adjustments=True),
            cll.ElseLevel(),
        ],
        comparison_description="street line, postcode and city as one fact",
    )
    library_email = args.splink_email == "library"
    email = cl.EmailComparison("email") if library_email else cl.ExactMatch("email")
    settings = SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="unique_id",
        blocking_rules_to_generate_predictions=rules,
        comparisons=[
            cl.NameComparison("first_name"),  # exact level with term frequencies built in
            cl.NameComparison("surname"),
            cl.DateOfBirthComparison("dob", input_is_string=True),
            email,
            cl.LevenshteinAtThresholds("phone", 1),
            address,
            cl.JaroWinklerAtThresholds("company", [0.92, 0.85]),
        ],
    )
    return settings, rules


# crmhub match field -> the Splink column holding it ("column:N": its first N characters).
FIELD_COLUMNS = {
    "emails": "email",  # the first value only
    "phones": "phone",
    "first_name": "first_name",
    "first_root": "first_name",  # Splink has no nickname root: the first name as written
    "first_initial": "first_name:1",
    "first_phonetic": "first_name_metaphone",
    "last_name": "surname",
    "last_phonetic": "surname_metaphone",
    "postcode": "postcode",
    "birth_date": "dob",
    "street": "street",
    "city": "city",
    "company": "company",
}

Fields = tuple[tuple[str, int], ...]  # (Splink column, prefix length or 0) per field


def translate(rules: Sequence[BlockingRule]) -> tuple[dict[str, Fields], list[str]]:
    """crmhub blocking rules on Splink's columns, by name; and the names of the rules that
    use a field Splink has no column for (left out)."""
    translated: dict[str, Fields] = {}
    missing: list[str] = []
    for rule in rules:
        fields = []
        for spec in rule.fields:
            name, _, prefix = spec.partition(":")
            if name not in FIELD_COLUMNS:
                missing.append(rule.name)
                break
            column, _, own = FIELD_COLUMNS[name].partition(":")
            fields.append((column, int(own or prefix or 0)))
        else:
            translated[rule.name] = tuple(fields)
    return translated, missing


def splink_sql(fields: Fields) -> list[str]:
    """A translated rule's fields as Splink ``block_on`` expressions."""
    return [f"substr({column}, 1, {size})" if size else column for column, size in fields]


BLOCKING_RULES, UNTRANSLATED_RULES = translate(MatchSettings().rules)
TRAINING_RULES, _ = translate([session.rule for session in TRAINING_SESSIONS])


def _block_keys(df: Any, cap: int) -> None:
    """One key column per blocking rule (``block_<rule>``), null where a field is unknown or
    where the key's block holds more than ``cap`` records: crmhub's ``max_block_size``."""
    for name, fields in BLOCKING_RULES.items():
        key = None
        for column, size in fields:
            part = df[column].str[:size] if size else df[column]
            key = part if key is None else key + "\x1f" + part
        sizes = key.map(key.value_counts())
        df[f"block_{name}"] = key.where(sizes <= cap)


def _first(values: list[tuple[str, ...]]) -> list[str | None]:
    return [v[0] if v else None for v in values]


def run_splink(people: list[Any], truth: IntArray, args: argparse.Namespace) -> dict[str, Any]:
    """Splink 4 with the DuckDB backend on the same records (see the module docstring)."""
    import duckdb
    import pandas as pd
    import splink
    from splink import DuckDBAPI, Linker, block_on
    from splink.blocking_analysis import (
        cumulative_comparisons_to_be_scored_from_blocking_rules_data,
    )

    times: dict[str, float] = {}
    started = mark = time.perf_counter()

    def stage(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        times[name], mark = now - mark, now

    frame = match_frame(people)
    emails, phones = frame.multi("emails"), frame.multi("phones")
    df = pd.DataFrame(
        {
            "unique_id": np.arange(len(frame), dtype=np.int64),
            "first_name": frame.scalar("first_name"),
            "surname": frame.scalar("last_name"),
            "first_name_metaphone": frame.scalar("first_phonetic"),
            "surname_metaphone": frame.scalar("last_phonetic"),
            "dob": frame.scalar("birth_date"),
            "email": _first(emails),
            "phone": _first(phones),
            "postcode": frame.scalar("postcode"),
            "street": frame.scalar("street"),
            "city": frame.scalar("city"),
            "company": frame.scalar("company"),
        }
    )
    if args.splink_block_cap:
        _block_keys(df, args.splink_block_cap)
    stage("dataframe")
    settings, rules = _splink_settings(args)
    db_api = DuckDBAPI()
    linker = Linker(df, settings, db_api, set_up_basic_logging=False)
    stage("linker")
    linker.training.estimate_probability_two_random_records_match(
        [block_on("first_name", "surname", "dob"), block_on("email")], recall=0.7
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=args.u_max_pairs)
    for fields in TRAINING_RULES.values():  # crmhub's TRAINING_SESSIONS
        linker.training.estimate_parameters_using_expectation_maximisation(
            block_on(*splink_sql(fields)), estimate_without_term_frequencies=True
        )
    stage("train")
    predictions = linker.inference.predict(threshold_match_probability=args.threshold)
    stage("predict")
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
        predictions, threshold_match_probability=args.threshold
    )
    assigned = clusters.as_pandas_dataframe()[["unique_id", "cluster_id"]]
    stage("cluster")
    seconds = time.perf_counter() - started

    # Not timed: what the blocking rules compare, and the figures.
    counts = cumulative_comparisons_to_be_scored_from_blocking_rules_data(
        table_or_tables=df, blocking_rules=rules, link_type="dedupe_only", db_api=DuckDBAPI()
    )
    labels = np.full(len(frame), -1, dtype=object)
    labels[assigned["unique_id"].to_numpy(dtype=np.int64)] = assigned["cluster_id"].to_numpy()
    if (labels == -1).any():  # every record is in the clusters table, alone or not
        raise RuntimeError("Splink's clusters miss some records")

    def count(query: str) -> int:
        return int(db_api._con.execute(query).fetchall()[0][0])

    return {
        "records": len(frame),
        "candidate_pairs": int(counts["row_count"].sum()),
        "links": count(f"select count(*) from {predictions.physical_name}"),
        "seconds": round(seconds, 2),
        "stage_seconds": {k: round(v, 2) for k, v in times.items()},
        "cluster_based": cluster_metrics(labels.astype(np.int64), truth),
        "records_with_several_emails": sum(len(v) > 1 for v in emails),
        "records_with_several_phones": sum(len(v) > 1 for v in phones),
        "duckdb_threads": count("select current_setting('threads')"),
        "versions": {"splink": splink.__version__, "duckdb": duckdb.__version__},
        "prior": linker._settings_obj._probability_two_random_records_match,
    }


def child(args: argparse.Namespace) -> None:
    """One side, one run: read the pickled records, run, print one JSON line."""
    with open(args.data_file, "rb") as file:
        people, truth = pickle.load(file)
    loaded_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = (run_crmhub if args.side == "crmhub" else run_splink)(people, truth, args)
    result["side"] = args.side
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    result["peak_rss_after_load_mb"] = round(loaded_rss)
    print(json.dumps(result), flush=True)


def _row(label: str, crmhub: object, splink: object) -> str:
    return f"| {label} | {crmhub} | {splink} |"


def _table(results: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> str:
    c, s = results["crmhub"][0], results["splink"][0]
    median = {side: statistics.median(r["seconds"] for r in runs) for side, runs in results.items()}
    rss = {side: max(r["peak_rss_mb"] for r in runs) for side, runs in results.items()}
    versions = s["versions"]
    cm, sm = c["cluster_based"], s["cluster_based"]  # of the first run
    runs = f"median of {args.runs}" if args.runs > 1 else "1 run"
    lines = [
        _row(
            "",
            "crmhub",
            f"Splink {versions['splink']} (DuckDB {versions['duckdb']}, "
            f"{s['duckdb_threads']} threads)",
        ),
        "|---|---|---|",
        _row("records", f"{c['records']:,}", f"{s['records']:,}"),
        _row(
            "candidate pairs / comparisons made",
            f"{c['candidate_pairs']:,}",
            f"{s['candidate_pairs']:,}",
        ),
        _row(f"links at p >= {args.threshold}", f"{c['links']:,}", f"{s['links']:,}"),
        _row(
            "clusters (of 2+ records)",
            f"{cm['multi_record_clusters']:,}",
            f"{sm['multi_record_clusters']:,}",
        ),
        _row("clusters mixing people", f"{cm['mixed_clusters']:,}", f"{sm['mixed_clusters']:,}"),
        _row(
            "precision (cluster pairs, run 1)", f"{cm['precision']:.4f}", f"{sm['precision']:.4f}"
        ),
        _row("recall (cluster pairs, run 1)", f"{cm['recall']:.4f}", f"{sm['recall']:.4f}"),
        _row("**F1 (cluster pairs, run 1)**", f"**{cm['f1']:.4f}**", f"**{sm['f1']:.4f}**"),
        _row(
            "F1, each run",
            ", ".join(f"{r['cluster_based']['f1']:.4f}" for r in results["crmhub"]),
            ", ".join(f"{r['cluster_based']['f1']:.4f}" for r in results["splink"]),
        ),
        _row(
            f"**wall seconds** ({runs})",
            f"**{median['crmhub']:.2f}**",
            f"**{median['splink']:.2f}**",
        ),
        _row(
            "wall seconds, each run",
            ", ".join(f"{r['seconds']:.2f}" for r in results["crmhub"]),
            ", ".join(f"{r['seconds']:.2f}" for r in results["splink"]),
        ),
        _row("peak RSS MB (max of runs)", f"{rss['crmhub']:,}", f"{rss['splink']:,}"),
    ]
    return "\n".join(lines)


def _commit() -> str:
    """The crmhub checkout's commit, "+dirty" when its dedupe code has changes."""
    root = Path(__file__).resolve().parent.parent

    def git(*command: str) -> str:
        done = subprocess.run(["git", "-C", str(root), *command], capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else "?"

    dirty = git("status", "--porcelain", "--", "dedupe", "crmhub/dedupe")
    return git("rev-parse", "--short", "HEAD") + ("+dirty" if dirty not in ("", "?") else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--runs", type=int, default=1, help="runs per side (median time)")
    parser.add_argument("--threshold", type=float, default=0.95)
    parser.add_argument(
        "--u-max-pairs", type=float, default=2e6, help="Splink's random pairs for u"
    )
    parser.add_argument(
        "--splink-email",
        choices=("library", "exact"),
        default="exact",
        help="Splink's email comparison: cl.EmailComparison, or exact match only (as crmhub's)",
    )
    parser.add_argument(
        "--splink-block-cap",
        type=int,
        default=MatchSettings().max_block_size,
        help="Splink skips blocks larger than this, as crmhub does (0: no cap)",
    )
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--data-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        child(args)
        return

    commit = _commit()
    print(f"# crmhub at {commit}; Splink blocking rules (crmhub rule: Splink block_on):")
    for name, fields in BLOCKING_RULES.items():
        print(f"#   {name}: {', '.join(splink_sql(fields))}")
    print(f"#   left out (no Splink column): {', '.join(UNTRANSLATED_RULES) or 'none'}")
    cap = args.splink_block_cap
    print(f"#   blocks over {cap} records skipped" if cap else "#   no block size cap")
    started = time.perf_counter()
    people, truth = load_records(args.records, args.seed)
    print(
        f"# {len(people):,} canonical records of {len(np.unique(truth)):,} people "
        f"(world data, seed {args.seed}), mapped in {time.perf_counter() - started:.1f} s "
        "(not timed)",
        flush=True,
    )
    results: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
    with tempfile.TemporaryDirectory() as folder:
        data_file = os.path.join(folder, "records.pickle")
        with open(data_file, "wb") as file:
            pickle.dump((people, truth), file, protocol=pickle.HIGHEST_PROTOCOL)
        del people
        for run in range(1, args.runs + 1):
            for side in SIDES:
                command = [
                    sys.executable, __file__, "--side", side, "--data-file", data_file,
                    "--seed", str(args.seed), "--threshold", str(args.threshold),
                    "--u-max-pairs", str(args.u_max_pairs), "--splink-email", args.splink_email,
                    "--splink-block-cap", str(args.splink_block_cap),
                ]  # fmt: skip
                out = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True)
                result = json.loads(out.stdout.strip().splitlines()[-1])
                result["run"] = run
                results[side].append(result)
                print(json.dumps(result), flush=True)

    if _commit() != commit:
        print(f"# WARNING: crmhub changed during the run ({commit} -> {_commit()})")
    c, s = results["crmhub"][0], results["splink"][0]
    ratio = statistics.median(r["seconds"] for r in results["splink"]) / statistics.median(
        r["seconds"] for r in results["crmhub"]
    )
    print()
    print(_table(results, args))
    print()
    print(f"speed ratio splink_seconds / crmhub_seconds = {ratio:.2f}")
    pb = c["pair_based"]
    print(
        f"crmhub pair-based (links among candidates, as benchmarks/dedupe.py): blocking recall "
        f"{pb['blocking_recall']:.4f}, precision {pb['precision']:.4f}, recall "
        f"{pb['recall']:.4f}, F1 {pb['f1']:.4f}"
    )
    print(
        f"notes: Splink got the first email and phone of each record "
        f"({s['records_with_several_emails']} records have several emails, "
        f"{s['records_with_several_phones']} several phones); DuckDB ran with its default "
        f"{s['duckdb_threads']} threads (all cores); Splink prior {s['prior']:.3g} "
        f"(deterministic rules, recall 0.7), u from {args.u_max_pairs:.0f} random pairs, "
        f"email comparison {args.splink_email!r}; "
        f"crmhub skipped {c['oversized_blocks']} oversized blocks; "
        f"stage seconds crmhub {c['stage_seconds']}, splink {s['stage_seconds']}"
    )


if __name__ == "__main__":
    main()
