"""Llama-FinSent-S demo: a Gradio Space that labels financial news, 3 or 7 classes, with probabilities.

Run it:     FINSENT_MODEL=<folder or Hub id> python app.py      (or: finsent space serve --model smollm2)
Deploy it:  finsent space deploy --repo-id you/finsent-demo --model oopere/Llama-FinSent-S

The model is FINSENT_MODEL if set, else the first entry of `models:` in the README front matter beside
this file, else oopere/Llama-FinSent-S; it loads once, in `main()`, never at import time. Every result
comes from `finsent.FinSentClassifier` (label scoring), the same code path as the evaluation.

API (gradio_client):
    /classify      (text, scheme) -> (label, table, notice); one text per line; concurrent requests are
                   batched into one model call (up to MAX_BATCH requests)
    /classify_csv  (file, scheme) -> CSV file: the input columns + predicted_label, p_<label>..., text_truncated
"""

from __future__ import annotations

import csv
import logging
import os
import tempfile
from pathlib import Path

import gradio as gr
import pandas as pd
import yaml

import finsent
from finsent import SCHEMES, FinSentClassifier
from finsent.classify import iter_chunks
from finsent.models import PUBLISHED_MODEL

logger = logging.getLogger("finsent.space")

HERE = Path(__file__).resolve().parent
MAX_CHARS = 2000  # per text; longer texts are cut (with a notice) before tokenization
MAX_LINES = 50  # texts per text-box request; more belong in a CSV
MAX_CSV_ROWS = 500  # ~3 min for the 1B model on a 2-vCPU Space at ~2.5 rows/s
MAX_BATCH = 16  # concurrent /classify requests merged into one model call
QUEUE_SIZE = 64  # waiting events beyond this are refused with "queue full"
CSV_CHUNK = 16  # rows per classify call while reporting CSV progress
NEW_COLUMNS = ("predicted_label", "text_truncated")

EXAMPLES = [
    ["Northwind Logistics raises full-year guidance after third-quarter revenue jumps 18%", "3"],
    ["Shares of Halcyon Pharma tumble 27% after the FDA rejects its lead drug candidate", "3"],
    ["The central bank left its benchmark rate unchanged at 4.25%, in line with economists' forecasts", "3"],
    ["Orion Steel swings to a surprise quarterly loss and suspends its dividend", "7"],
    [
        "Apex Retail to close 40 stores and cut 1,200 jobs as online sales slump\n"
        "Brightwater Energy wins a $2.1 billion offshore wind contract\n"
        "Meridian Bank will publish its annual report on March 14",
        "3",
    ],
]


class CsvInputError(ValueError):
    """An uploaded CSV that cannot be classified; the message names the file and the problem."""


def prob_column(label: str) -> str:
    return "p_" + label.replace(" ", "_")


def clip(text: str) -> tuple[str, bool]:
    """Cut a text to MAX_CHARS characters; say whether it was cut."""
    return (text[:MAX_CHARS], True) if len(text) > MAX_CHARS else (text, False)


def split_box(raw: str | None) -> tuple[list[str], list[str]]:
    """The text box's non-empty lines (clipped), and notices about what was cut."""
    lines = [line.strip() for line in (raw or "").splitlines() if line.strip()]
    notices = []
    if len(lines) > MAX_LINES:
        notices.append(f"{len(lines)} lines given: only the first {MAX_LINES} were classified "
                       "(upload a CSV for more).")
        lines = lines[:MAX_LINES]
    texts = []
    for i, line in enumerate(lines, 1):
        text, cut = clip(line)
        if cut:
            notices.append(f"Text {i} is longer than {MAX_CHARS:,} characters: only its first "
                           f"{MAX_CHARS:,} were classified.")
        texts.append(text)
    return texts, notices


def table_of(predictions, scheme: str) -> pd.DataFrame:
    labels = SCHEMES[scheme]
    rows = [[p.text, p.label, *(round(p.probs[label], 4) for label in labels)] for p in predictions]
    return pd.DataFrame(rows, columns=["text", "label", *(prob_column(label) for label in labels)])


def classify_requests(classifier: FinSentClassifier, raws: list[str], schemes: list[str]):
    """The batched /classify handler: lists in (one item per request), three lists out.

    Requests are grouped by scheme and all their lines go through ONE classify call per scheme, so
    concurrent users share forward passes. A bad request gets a notice; it never fails its batch.
    """
    labels, tables, notices = [None] * len(raws), [None] * len(raws), [""] * len(raws)
    parsed = [split_box(raw) for raw in raws]
    for i, (scheme, (texts, _)) in enumerate(zip(schemes, parsed)):
        if not texts:
            notices[i] = "Type or paste a financial headline first (one per line to classify several)."
        elif scheme not in SCHEMES:
            notices[i] = f"Unknown label scheme {scheme!r}: choose 3 or 7 classes."
        tables[i] = table_of([], scheme if scheme in SCHEMES else "3")
    for scheme in sorted(set(schemes) & set(SCHEMES)):
        members = [i for i, s in enumerate(schemes) if s == scheme and parsed[i][0]]
        if not members:
            continue
        flat = [text for i in members for text in parsed[i][0]]
        predictions = iter(classifier.classify(flat, scheme, batch_size=MAX_BATCH))
        for i in members:
            texts, notes = parsed[i]
            preds = [next(predictions) for _ in texts]
            notes = notes + [f"Text {n} was cut to fit the model's context." for n, p in enumerate(preds, 1)
                             if p.truncated]
            tables[i] = table_of(preds, scheme)
            if len(preds) == 1:
                labels[i] = preds[0].probs
                head = f"**{preds[0].label}** (probability {preds[0].probs[preds[0].label]:.2f})"
            else:
                head = f"{len(preds)} texts classified: see the table."
            notices[i] = "\n\n".join([head, *(f"⚠️ {note}" for note in notes)])
    return labels, tables, notices


def read_csv_texts(path: str | Path) -> tuple[list[str], list[dict], str]:
    """(columns, rows, text column) of an uploaded CSV, or CsvInputError naming the file and problem."""
    name = Path(path).name
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            columns = [c for c in (reader.fieldnames or []) if c is not None]
            text_col = next((c for c in columns if c.strip().lower() == "text"), None)
            if text_col is None:
                found = ", ".join(repr(c) for c in columns) or "none"
                raise CsvInputError(f"{name} has no 'text' column (its columns: {found}). "
                                    "Put the texts to classify in a column named text.")
            taken = [c for c in columns if c in NEW_COLUMNS or c.startswith("p_")]
            if taken:
                raise CsvInputError(f"{name} already has result column(s) {', '.join(taken)}: rename them "
                                    "so the results do not overwrite them.")
            rows, empty = [], []
            for row in reader:
                if len(rows) == MAX_CSV_ROWS:
                    raise CsvInputError(f"{name} has more than {MAX_CSV_ROWS} rows: the limit here is "
                                        f"{MAX_CSV_ROWS}. Split the file, or run `finsent classify` locally.")
                if None in row:
                    raise CsvInputError(f"{name}: row {len(rows) + 1} (line {reader.line_num}) has more "
                                        f"fields than the header's {len(columns)}.")
                if not (row.get(text_col) or "").strip():
                    empty.append(f"row {len(rows) + 1} (line {reader.line_num})")
                rows.append(row)
    except UnicodeDecodeError as exc:
        raise CsvInputError(f"{name} is not UTF-8 text (byte {exc.start}): save it as UTF-8 CSV.") from None
    except csv.Error as exc:
        raise CsvInputError(f"{name} is not a valid CSV: {exc}") from None
    if not rows:
        raise CsvInputError(f"{name} has no data rows under its header.")
    if empty:
        more = f" and {len(empty) - 5} more" if len(empty) > 5 else ""
        raise CsvInputError(f"{name}: empty text in {', '.join(empty[:5])}{more}.")
    return columns, rows, text_col


def classify_csv_file(classifier: FinSentClassifier, path: str | Path, scheme: str, progress=None) -> Path:
    """Classify every row's text; write the input columns + results to a new CSV and return its path."""
    if scheme not in SCHEMES:
        raise CsvInputError(f"unknown label scheme {scheme!r}: choose 3 or 7 classes")
    columns, rows, text_col = read_csv_texts(path)
    labels = SCHEMES[scheme]
    clipped = [clip(row[text_col].strip()) for row in rows]
    done, predictions = 0, []
    if progress is not None:
        progress((0, len(rows)), desc="Classifying", unit="rows")
    for chunk in iter_chunks([text for text, _ in clipped], CSV_CHUNK):
        predictions += classifier.classify(chunk, scheme, batch_size=CSV_CHUNK)
        done += len(chunk)
        if progress is not None:  # not truthiness: gr.Progress has a __len__ (0 when idle)
            progress((done, len(rows)), desc="Classifying", unit="rows")
    out = Path(tempfile.mkdtemp(prefix="finsent-csv-")) / f"{Path(path).stem}-finsent.csv"
    with open(out, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*columns, "predicted_label", *(prob_column(label) for label in labels), "text_truncated"])
        for row, pred, (_, cut) in zip(rows, predictions, clipped):
            writer.writerow([*(row.get(c, "") for c in columns), pred.label,
                             *(f"{pred.probs[label]:.6f}" for label in labels), cut or pred.truncated])
    logger.info("classified %d rows of %s", len(rows), Path(path).name)
    return out


def build_demo(classifier: FinSentClassifier, *, queue_size: int = QUEUE_SIZE) -> gr.Blocks:
    """The page and its API around one loaded classifier (queue configured; not launched)."""

    def on_classify(text: list[str], scheme: list[str]):  # batch=True: one item per queued request
        return classify_requests(classifier, text, scheme)

    # Gradio injects the live progress tracker through this default value (its documented idiom).
    def on_csv(file: str | None, scheme: str, progress=gr.Progress()):  # noqa: B008
        if not file:
            raise gr.Error("Upload a CSV file with a 'text' column first.")
        try:
            return str(classify_csv_file(classifier, file, scheme, progress))
        except CsvInputError as exc:
            raise gr.Error(str(exc)) from None

    with gr.Blocks(title="Llama-FinSent-S") as demo:
        gr.Markdown(
            "# Llama-FinSent-S: financial news sentiment\n"
            "Llama-FinSent-S is Llama-3.2-1B with 40 % of every MLP's neurons pruned, fine-tuned on FinGPT's "
            "sentiment data. The app scores every label as the answer to the FinGPT prompt and shows each "
            "label's probability.\n\n"
            f"Model loaded here: `{classifier.source}` · finsent {finsent.__version__}"
        )
        with gr.Row():
            with gr.Column(scale=3):
                text = gr.Textbox(label="Headline(s): one per line", lines=4, max_lines=12,
                                  placeholder="e.g. Acme Corp beats estimates and raises its outlook",
                                  elem_id="finsent-text")
                scheme = gr.Radio([("3 classes", "3"), ("7 classes", "7")], value="3", label="Labels",
                                  elem_id="finsent-scheme")
                button = gr.Button("Classify", variant="primary", elem_id="finsent-classify")
            with gr.Column(scale=2):
                notice = gr.Markdown(label="Notice", elem_id="finsent-notice")
                label = gr.Label(label="Sentiment", num_top_classes=7, elem_id="finsent-label")
        table = gr.Dataframe(table_of([], "3"), label="Results", interactive=False, wrap=True,
                             elem_id="finsent-table")
        gr.Examples(EXAMPLES, inputs=[text, scheme], label="Examples (click one, then Classify)")
        gr.on([button.click, text.submit], on_classify, inputs=[text, scheme], outputs=[label, table, notice],
              api_name="classify", batch=True, max_batch_size=MAX_BATCH, concurrency_limit=1,
              concurrency_id="model")
        with gr.Accordion(f"Classify a CSV file (a 'text' column, up to {MAX_CSV_ROWS} rows)", open=True):
            with gr.Row():
                upload = gr.File(label="CSV to classify", file_types=[".csv"], elem_id="finsent-csv-in")
                result = gr.File(label="Results CSV", interactive=False, elem_id="finsent-csv-out")
            csv_button = gr.Button("Classify CSV", elem_id="finsent-csv-button")
        csv_button.click(on_csv, inputs=[upload, scheme], outputs=result, api_name="classify_csv",
                         concurrency_limit=1, concurrency_id="model")
    return demo.queue(max_size=queue_size, default_concurrency_limit=1)


def launch(demo: gr.Blocks, **kwargs):
    """Launch with the page's look; keyword arguments (server_name, prevent_thread_lock...) win."""
    options = {"theme": gr.themes.Soft(), "show_error": True, "max_file_size": "20mb"}
    return demo.launch(**{**options, **kwargs})


def model_choice() -> str:
    """FINSENT_MODEL, else the README front matter's first model, else the published model."""
    if os.environ.get("FINSENT_MODEL"):
        return os.environ["FINSENT_MODEL"]
    readme = HERE / "README.md"
    if readme.is_file():
        parts = readme.read_text(encoding="utf-8").split("---", 2)
        meta = yaml.safe_load(parts[1]) if len(parts) == 3 and not parts[0].strip() else None
        models = (meta or {}).get("models") or []
        if models:
            return str(models[0])
    return PUBLISHED_MODEL


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    model = model_choice()
    logger.info("finsent code from %s; loading model %s", Path(finsent.__file__).resolve().parent, model)
    try:
        classifier = FinSentClassifier.from_pretrained(model)
    except finsent.ModelNotAvailableError as exc:  # say what to do, not a traceback
        raise SystemExit(f"app.py: {exc}") from None
    launch(build_demo(classifier))


if __name__ == "__main__":
    main()
