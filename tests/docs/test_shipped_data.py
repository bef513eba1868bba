"""The data set the project writes and ships itself, data/finsent-headlines: schema, balance, splits, datasheet,
and independence from the real benchmark data in ../shared/data.

Run: .venv/bin/pytest tests/docs/test_shipped_data.py   (a few seconds; reads the shared data in place, copies nothing)
Regenerate the DATASHEET's count tables after editing rows: .venv/bin/python tests/docs/test_shipped_data.py
"""

from __future__ import annotations

import collections
import csv
import itertools
import json
import math
import re
from pathlib import Path

import pytest
from checkout import REPO

from finsent.core.labels import SCHEMES, to_coarse

DATA = REPO / "data" / "finsent-headlines"
SPLITS = ("train", "test")
FIELDS = ("id", "text", "label", "coarse", "kind", "topic")
KINDS = ("news", "tweet")
TOPICS = (
    "bankruptcy", "contracts", "corporate", "crypto", "dividends", "earnings", "guidance", "ipo", "legal",
    "macro", "management", "markets", "mergers", "product", "ratings", "restructuring",
)
MIN_WORDS, MAX_WORDS = 5, 45
MIN_ROWS = 1000
# Token-set Jaccard at or above which two texts count as the same sentence lightly edited. The closest pair of
# shipped texts scores below 0.45, and so does the closest pair of a shipped text and a real TFNS / FPB text.
NEAR = 0.5
ID_RE = re.compile(r"fsh-\d{4}")
URL_RE = re.compile(r"https?://\S+")


# --- the checks, kept as plain functions so the tests below can also show that they catch bad input ------------

def row_problems(row: object, where: str) -> list[str]:
    """Every way one parsed row breaks the DATASHEET's schema, each message starting with `file:line`."""
    if not isinstance(row, dict):
        return [f"{where}: expected a JSON object, got {type(row).__name__}"]
    problems = []
    missing = [f for f in FIELDS if f not in row]
    extra = sorted(set(row) - set(FIELDS))
    if missing:
        problems.append(f"{where}: missing field(s) {', '.join(missing)}")
    if extra:
        problems.append(f"{where}: unknown field(s) {', '.join(extra)}")
    if "id" in row and not (isinstance(row["id"], str) and ID_RE.fullmatch(row["id"])):
        problems.append(f"{where}: id {row['id']!r} is not of the form fsh-NNNN")
    text = row.get("text")
    if "text" in row:
        if not isinstance(text, str) or not text.strip():
            problems.append(f"{where}: text is empty or not a string")
        elif text != text.strip() or "\n" in text:
            problems.append(f"{where}: text has surrounding whitespace or a line break")
        elif not MIN_WORDS <= len(text.split()) <= MAX_WORDS:
            problems.append(f"{where}: text has {len(text.split())} words, outside {MIN_WORDS}-{MAX_WORDS}")
    label = row.get("label")
    if "label" in row and label not in SCHEMES["7"]:
        problems.append(f"{where}: label {label!r} is not one of the 7 labels")
    elif "coarse" in row and row["coarse"] != to_coarse(label):
        problems.append(f"{where}: coarse {row['coarse']!r} breaks the rule: {label!r} -> {to_coarse(label)!r}")
    if "kind" in row and row["kind"] not in KINDS:
        problems.append(f"{where}: kind {row['kind']!r} is not one of {', '.join(KINDS)}")
    if "topic" in row and row["topic"] not in TOPICS:
        problems.append(f"{where}: topic {row['topic']!r} is not a documented topic")
    return problems


def read_split(path: Path) -> tuple[list[dict], list[str]]:
    """Rows of one JSONL file, and the problems found (a bad line is reported and skipped, never fatal)."""
    rows, problems = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        where = f"{path.name}:{number}"
        if not line.strip():
            problems.append(f"{where}: blank line")
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            problems.append(f"{where}: invalid JSON ({err.msg})")
            continue
        found = row_problems(row, where)
        problems += found
        if not found:
            rows.append(row)
    return rows, problems


def tokens(text: str) -> frozenset[str]:
    """Lower-cased word set, links dropped (tweets carry t.co links that would dilute the overlap)."""
    return frozenset(re.findall(r"[a-z0-9]+", URL_RE.sub(" ", text.lower())))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def near_matches(queries: list[str], corpus: list[str], threshold: float = NEAR) -> list[tuple[float, str, str]]:
    """Every (score, query, corpus text) with token-Jaccard >= threshold, found exactly without 16M comparisons.

    J(a, b) >= t needs b to hold at least ceil(t |a|) of a's tokens, so b holds at least one of ANY
    |a| - ceil(t |a|) + 1 of them: probing a's rarest tokens in an inverted index finds every candidate.
    """
    corpus_sets = [tokens(text) for text in corpus]
    index: dict[str, list[int]] = collections.defaultdict(list)
    for i, words in enumerate(corpus_sets):
        for word in words:
            index[word].append(i)
    hits = []
    for query in queries:
        words = tokens(query)
        if not words:
            continue
        probes = len(words) - math.ceil(threshold * len(words) - 1e-9) + 1
        rarest = sorted(words, key=lambda w: (len(index.get(w, ())), w))[:probes]
        for i in set().union(*(index.get(w, ()) for w in rarest)):
            score = jaccard(words, corpus_sets[i])
            if score >= threshold:
                hits.append((round(score, 3), query, corpus[i]))
    return sorted(hits, reverse=True)


def count_tables(rows_by_split: dict[str, list[dict]]) -> dict[str, dict[str, tuple[int, int, int]]]:
    """{field: {value: (train, test, all)}} for label, coarse, kind and topic, plus a 'total' row per field."""
    tables = {}
    for field in ("label", "coarse", "kind", "topic"):
        per = {s: collections.Counter(r[field] for r in rows_by_split[s]) for s in SPLITS}
        values = set(per["train"]) | set(per["test"])
        table = {v: (per["train"][v], per["test"][v], per["train"][v] + per["test"][v]) for v in values}
        n_train, n_test = len(rows_by_split["train"]), len(rows_by_split["test"])
        table["total"] = (n_train, n_test, n_train + n_test)
        tables[field] = table
    return tables


def datasheet_tables(text: str) -> dict[str, dict[str, tuple[int, int, int]]]:
    """The count tables between the DATASHEET's `counts:begin` / `counts:end` markers, in count_tables' shape."""
    block = text.split("<!-- counts:begin -->", 1)[1].split("<!-- counts:end -->", 1)[0]
    tables: dict[str, dict[str, tuple[int, int, int]]] = {}
    current = None
    for line in block.splitlines():
        cells = [c.strip().strip("*`") for c in line.strip().strip("|").split("|")]
        if not line.startswith("|") or set("".join(cells)) <= set("-: "):
            continue
        if cells[1:] == ["train", "test", "all"]:
            current = tables.setdefault(cells[0], {})
        else:
            current[cells[0]] = tuple(int(c.replace(",", "")) for c in cells[1:])
    return tables


def render_count_tables(rows_by_split: dict[str, list[dict]]) -> str:
    """The DATASHEET's count tables as Markdown, labels in scheme order and topics by size."""
    tables = count_tables(rows_by_split)
    orders = {"label": SCHEMES["7"], "coarse": SCHEMES["3"], "kind": KINDS,
              "topic": sorted(set(tables["topic"]) - {"total"}, key=lambda t: (-tables["topic"][t][2], t))}
    blocks = []
    for field, order in orders.items():
        lines = [f"| {field} | train | test | all |", "|---|---:|---:|---:|"]
        lines += [f"| {v} | {' | '.join(map(str, tables[field].get(v, (0, 0, 0))))} |" for v in order]
        lines.append("| **total** | " + " | ".join(f"**{n}**" for n in tables[field]["total"]) + " |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def write_count_tables(datasheet: Path = DATA / "DATASHEET.md") -> None:
    """Regenerate the tables between the markers from the JSONL files (run this file as a script)."""
    rows = {split: read_split(DATA / f"{split}.jsonl")[0] for split in SPLITS}
    head, rest = datasheet.read_text(encoding="utf-8").split("<!-- counts:begin -->", 1)
    tail = rest.split("<!-- counts:end -->", 1)[1]
    table = render_count_tables(rows)
    datasheet.write_text(f"{head}<!-- counts:begin -->\n{table}\n<!-- counts:end -->{tail}", encoding="utf-8")


# --- fixtures ----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shipped() -> dict[str, tuple[list[dict], list[str]]]:
    return {split: read_split(DATA / f"{split}.jsonl") for split in SPLITS}


@pytest.fixture(scope="module")
def rows(shipped) -> dict[str, list[dict]]:
    return {split: shipped[split][0] for split in SPLITS}


@pytest.fixture(scope="module")
def all_rows(rows) -> list[dict]:
    return rows["train"] + rows["test"]


# --- the checks on the shipped files -----------------------------------------------------------------------------

def test_every_row_has_the_documented_schema(shipped):
    problems = shipped["train"][1] + shipped["test"][1]
    assert problems == [], "\n".join(problems[:30])


def test_schema_check_names_the_file_the_row_and_the_problem(tmp_path):
    good = {"id": "fsh-0001", "text": "Acme shares jump after results", "label": "moderately positive",
            "coarse": "positive", "kind": "news", "topic": "earnings"}
    lines = [
        json.dumps(good),
        "{not json",
        "",
        json.dumps({**good, "label": "very positive"}),
        json.dumps({**good, "coarse": "positive", "label": "mildly positive"}),
        json.dumps({**good, "text": "Up"}),
        json.dumps({k: v for k, v in good.items() if k != "topic"} | {"source": "x"}),
        json.dumps({**good, "kind": "blog", "id": "7"}),
        json.dumps(["a list"]),
    ]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rows, problems = read_split(path)
    assert rows == [good]
    assert problems == [
        "bad.jsonl:2: invalid JSON (Expecting property name enclosed in double quotes)",
        "bad.jsonl:3: blank line",
        "bad.jsonl:4: label 'very positive' is not one of the 7 labels",
        "bad.jsonl:5: coarse 'positive' breaks the rule: 'mildly positive' -> 'neutral'",
        "bad.jsonl:6: text has 1 words, outside 5-45",
        "bad.jsonl:7: missing field(s) topic",
        "bad.jsonl:7: unknown field(s) source",
        "bad.jsonl:8: id '7' is not of the form fsh-NNNN",
        "bad.jsonl:8: kind 'blog' is not one of news, tweet",
        "bad.jsonl:9: expected a JSON object, got list",
    ]


def test_ids_are_unique_across_both_splits(all_rows):
    counts = collections.Counter(r["id"] for r in all_rows)
    assert [i for i, n in counts.items() if n > 1] == []


def test_sizes_meet_the_minimums(rows, all_rows):
    n = len(all_rows)
    assert n >= MIN_ROWS
    assert 0.20 <= len(rows["test"]) / n <= 0.25
    tweets = sum(r["kind"] == "tweet" for r in all_rows)
    assert 0.30 <= tweets / n <= 0.42  # a third or a little more: the real TFNS benchmark is all tweets
    per_topic = collections.Counter(r["topic"] for r in all_rows)
    assert set(per_topic) == set(TOPICS)
    assert min(per_topic.values()) >= 20, per_topic


@pytest.mark.parametrize("split", [*SPLITS, "all"])
def test_the_seven_classes_are_balanced(rows, all_rows, split):
    data = all_rows if split == "all" else rows[split]
    shares = {label: sum(r["label"] == label for r in data) / len(data) for label in SCHEMES["7"]}
    assert all(0.12 <= share <= 0.16 for share in shares.values()), shares


@pytest.mark.parametrize("split", [*SPLITS, "all"])
def test_the_three_coarse_classes_are_balanced(rows, all_rows, split):
    data = all_rows if split == "all" else rows[split]
    shares = {label: sum(r["coarse"] == label for r in data) / len(data) for label in SCHEMES["3"]}
    assert all(0.30 <= share <= 0.40 for share in shares.values()), shares


def test_the_test_split_is_stratified_by_label_and_kind(rows, all_rows):
    overall = len(rows["test"]) / len(all_rows)
    groups = collections.Counter((r["label"], r["kind"]) for r in all_rows)
    in_test = collections.Counter((r["label"], r["kind"]) for r in rows["test"])
    off = {g: round(in_test[g] / n, 3) for g, n in groups.items() if abs(in_test[g] / n - overall) > 0.03}
    assert len(groups) == 14 and off == {}


def test_no_text_is_repeated_after_normalisation(all_rows):
    counts = collections.Counter(" ".join(sorted(tokens(r["text"]))) for r in all_rows)
    assert [t for t, n in counts.items() if n > 1] == []


def test_no_near_duplicates_within_or_across_splits(all_rows):
    texts = [r["text"] for r in all_rows]
    close = [hit for hit in near_matches(texts, texts) if hit[1] != hit[2]]  # exact repeats: the test above
    assert close == []


def test_near_duplicate_search_agrees_with_all_pairs_on_a_slice(all_rows):
    texts = [r["text"] for r in all_rows[:300]]
    threshold = 0.25  # low enough that this slice has close pairs to find
    sets = {text: tokens(text) for text in texts}
    scores = ((jaccard(sets[a], sets[b]), a, b) for a, b in itertools.permutations(texts, 2))
    brute = sorted((round(score, 3), a, b) for score, a, b in scores if score >= threshold)
    found = sorted(hit for hit in near_matches(texts, texts, threshold) if hit[1] != hit[2])
    assert brute and found == brute


def test_near_duplicate_search_finds_light_edits_and_skips_unrelated_text():
    corpus = ["Shares of Acme rose 4% on Tuesday after upbeat results https://t.co/abc",
              "Central bank holds rates steady", "Acme names new finance chief"]
    hits = near_matches(["Acme shares rose 5% on Tuesday after upbeat results!", "Zeta Corp files annual report"],
                        corpus)
    assert [(q, c) for _, q, c in hits] == [("Acme shares rose 5% on Tuesday after upbeat results!", corpus[0])]
    assert hits[0][0] == pytest.approx(8 / 11, abs=1e-3)  # 8 shared words; 9 + 10 - 8 in the union (link dropped)


def test_datasheet_count_tables_equal_the_computed_counts(rows):
    text = (DATA / "DATASHEET.md").read_text(encoding="utf-8")
    assert datasheet_tables(text) == count_tables(rows), (
        "stale counts: run `.venv/bin/python tests/docs/test_shipped_data.py` to rewrite them, or paste:\n"
        + render_count_tables(rows))


def test_datasheet_examples_and_readme_sizes_are_real(rows, all_rows):
    by_id = {r["id"]: r for r in all_rows}
    examples = re.findall(r"^\| ([a-z ]+) \| ([a-z]+) \| (fsh-\d{4}) \| (.+) \|$",
                          (DATA / "DATASHEET.md").read_text(encoding="utf-8"), flags=re.M)
    assert len(examples) == 14 and {e[0] for e in examples} == set(SCHEMES["7"])
    assert [(by_id[i]["label"], by_id[i]["coarse"], i, by_id[i]["text"]) for _, _, i, _ in examples] == examples
    readme = (DATA.parent / "README.md").read_text(encoding="utf-8")
    assert f"| {len(rows['train'])} hand-written" in readme and f"| {len(rows['test'])} held-out" in readme


if __name__ == "__main__":
    write_count_tables()
    print(f"rewrote the count tables in {DATA / 'DATASHEET.md'}")


def test_no_shipped_text_equals_or_nearly_equals_the_real_shared_data(shared_data, all_rows):
    real = []
    for path in sorted((shared_data / "tfns").glob("*.csv")):
        with path.open(newline="", encoding="utf-8") as handle:  # quoted tweets span lines: a real CSV parser
            real += [row["text"] for row in csv.DictReader(handle)]
    with (shared_data / "fpb" / "train.jsonl").open(encoding="utf-8") as handle:
        real += [json.loads(line)["sentence"] for line in handle if line.strip()]
    assert len(real) == 9543 + 2388 + 3634  # every real row was read
    hits = near_matches([r["text"] for r in all_rows], real)
    assert hits == [], f"{len(hits)} shipped texts match real data, first: {hits[:3]}"
