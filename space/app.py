"""Llama-FinSent-S demo: a Gradio Space that labels financial news, 3 or 7 classes, with probabilities.

Run it:     FINSENT_MODEL=<folder or Hub id> python app.py      (or: finsent space serve --model smollm2)
Deploy it:  finsent space deploy --repo-id you/finsent-demo --model oopere/Llama-FinSent-S

The model is FINSENT_MODEL if set, else the first entry of `models:` in the README front matter beside
this file, else oopere/Llama-FinSent-S; it loads once, in `main()`, never at import time. Every result
comes from `finsent.FinSentClassifier` (label scoring), the same code path as the evaluation.

API (gradio_client):
    /classify      (text, scheme) -> (label, table, notice); one text per line; concurrent requests are
                   batched into one model call (up to MAX_BATCH requests); a text that cannot be classified
                   gets its own notice and never fails the other requests of its batch
    /classify_csv  (file, scheme) -> CSV file: the input columns + predicted_label, p_<label>..., text_truncated;
                   spreadsheet-safe (a cell starting with = + - @ tab or CR gets a leading ')

The two endpoints have separate queues (concurrency ids), so a running CSV job never holds up /classify.

MCP: `python app.py` also serves both endpoints as MCP tools (Gradio's MCP server, streamable HTTP at
/gradio_api/mcp/) when the `mcp` package is installed (pip install "gradio[mcp]"); FINSENT_MCP=0 turns it off.
Every file the app keeps (uploads, result CSVs) is deleted once older than DELETE_CACHE's age.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import weakref
from pathlib import Path

import gradio as gr
import pandas as pd
import yaml
from starlette.middleware import Middleware
from starlette.responses import JSONResponse

import finsent
from finsent import SCHEMES, FinSentClassifier
from finsent.core.classify import iter_chunks
from finsent.core.errors import FinsentError, UsageError
from finsent.core.models import PUBLISHED_MODEL
from finsent.core.prompts import InputError, check_text
from finsent.core.tables import BadRow, TableError, csv_header, read_table, spreadsheet_safe  # one CSV-writing rule

logger = logging.getLogger("finsent.space")

HERE = Path(__file__).resolve().parent
MAX_CHARS = 2000  # per text; longer texts are cut (with a notice) before tokenization
MAX_LINES = 50  # texts per text-box request; more belong in a CSV
MAX_CSV_ROWS = 500  # ~3 min for the 1B model on a 2-vCPU Space at ~2.5 rows/s
MAX_BATCH = 16  # concurrent /classify requests merged into one model call
QUEUE_SIZE = 64  # waiting events beyond this are refused with "queue full"
CSV_CHUNK = 16  # rows per classify call while reporting CSV progress
NEW_COLUMNS = ("predicted_label", "text_truncated")
# (frequency, age) in seconds: Gradio deletes the uploads and results it keeps once older than `age`, checking
# every `frequency`; the app deletes its own result folders older than `age` when the next CSV job starts.
DELETE_CACHE = (600, 3600)

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


class CsvInputError(UsageError, ValueError):
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


def text_problem(text: str) -> str | None:
    """Why a text cannot be classified (finsent's one input-text rule, prompts.check_text), or None."""
    try:
        check_text(text)
    except InputError as exc:
        return str(exc)
    return None


def error_text(exc: BaseException) -> str:
    """One line for a user: finsent's own errors say what to fix; anything else is named with its type."""
    return str(exc) if isinstance(exc, FinsentError) else f"{type(exc).__name__}: {exc}"


def refused(endpoint: str, exc: BaseException) -> gr.Error:
    """The error a refused input answers with; the server log gets one line, not a traceback."""
    logger.warning("%s refused an input: %s", endpoint, error_text(exc))
    return gr.Error(error_text(exc), print_exception=False)


def classify_isolated(classifier: FinSentClassifier, texts: list[str], scheme: str, batch_size: int) -> list:
    """One prediction per text, in one classify call; if that call fails, one call per text, so a text the
    classifier rejects gets its exception in place of its prediction and every other text its result."""
    try:
        return list(classifier.classify(texts, scheme, batch_size=batch_size))
    except Exception as exc:  # any failure: isolated below, text by text
        logger.warning("a batch of %d texts failed (%s); classifying them one by one", len(texts), error_text(exc))
    results = []
    for text in texts:
        try:
            results.append(classifier.classify([text], scheme, batch_size=1)[0])
        except Exception as exc:  # this text's own error, shown to its request only
            results.append(exc)
    return results


def classify_requests(classifier: FinSentClassifier, raws: list[str], schemes: list[str]):
    """The batched /classify handler: lists in (one item per request), three lists out.

    Requests are grouped by scheme and all their lines go through ONE classify call per scheme, so
    concurrent users share forward passes. A bad request, or a bad text in it, gets a notice naming the
    problem; it never fails the other requests of its batch (this function does not raise for an input).
    """
    labels, tables, notices = [None] * len(raws), [None] * len(raws), [""] * len(raws)
    jobs: dict[int, tuple[str, list[tuple[int, str]], list[str], int]] = {}  # i -> (scheme, [(n, text)], notes, n)
    for i, (raw, scheme) in enumerate(zip(raws, schemes)):
        known = isinstance(scheme, str) and scheme in SCHEMES
        tables[i] = table_of([], scheme if known else "3")
        # The API hands over what the request holds (the event does not preprocess): a list, number or object
        # is refused here, never turned into its text and classified.
        if raw is not None and not isinstance(raw, str):
            notices[i] = (f"Nothing was classified.\n\n⚠️ The text must be a string (one text per line), "
                          f"got {type(raw).__name__}: send the text as a JSON string.")
            continue
        texts, notes = split_box(raw)
        if not texts:
            notices[i] = "Type or paste a financial headline first (one per line to classify several)."
        elif not isinstance(scheme, str):
            notices[i] = f'The label scheme must be the string "3" or "7", got {type(scheme).__name__}: {scheme!r:.40}.'
        elif not known:
            notices[i] = f"Unknown label scheme {scheme!r:.40}: choose 3 or 7 classes."
        else:
            good = []
            for n, text in enumerate(texts, 1):
                problem = text_problem(text)
                if problem:
                    notes.append(f"Text {n} was not classified: {problem}")
                else:
                    good.append((n, text))
            jobs[i] = (scheme, good, notes, len(texts))
    for scheme in SCHEMES:
        members = [i for i, (s, good, _, _) in jobs.items() if s == scheme and good]
        flat = [text for i in members for _, text in jobs[i][1]]
        results = iter(classify_isolated(classifier, flat, scheme, MAX_BATCH) if flat else [])
        for i in members:
            _, good, notes, n_texts = jobs[i]
            preds = []
            for n, _ in good:
                result = next(results)
                if isinstance(result, BaseException):
                    notes.append(f"Text {n} was not classified: {error_text(result)}")
                else:
                    preds.append(result)
                    if result.truncated:
                        notes.append(f"Text {n} was cut to fit the model's context.")
            tables[i] = table_of(preds, scheme)
            if len(preds) == n_texts == 1:  # the label view is for a single text
                labels[i] = preds[0].probs
    for i, (_, _, notes, _) in jobs.items():
        n_done = len(tables[i])
        if labels[i] is not None:
            label = tables[i]["label"][0]
            head = f"**{label}** (probability {labels[i][label]:.2f})"
        elif n_done:
            head = f"{n_done} texts classified: see the table." if n_done > 1 else "1 text classified: see the table."
        else:
            head = "Nothing was classified."
        notices[i] = "\n\n".join([head, *(f"⚠️ {note}" for note in notes)])
    return labels, tables, notices


def read_csv_texts(path: str | Path) -> tuple[list[str], list[dict], str]:
    """(columns, rows, text column) of an uploaded CSV, or CsvInputError naming the file and problem.

    Read with finsent.core.tables (the toolkit's one table reader: BOM, quoting and header rules as everywhere);
    column names are the header's, stripped.
    """
    path = Path(path)
    name = path.name
    if path.suffix.lower() != ".csv":
        raise CsvInputError(f"{name} is not a .csv file: upload a CSV (UTF-8) with a 'text' column.")
    try:
        columns = csv_header(path)
        text_cols = [c for c in columns if c.lower() == "text"]
        if not text_cols:
            raise CsvInputError(f"{name} has no 'text' column (its columns: {', '.join(map(repr, columns))}). "
                                "Put the texts to classify in a column named text.")
        if len(text_cols) > 1:
            raise CsvInputError(f"{name} has {len(text_cols)} text columns ({', '.join(map(repr, text_cols))}): "
                                "keep one column named text, so that the right one is classified.")
        taken = [c for c in columns if c.lower() in NEW_COLUMNS or c.lower().startswith("p_")]
        if taken:
            raise CsvInputError(f"{name} already has result column(s) {', '.join(taken)}: rename them "
                                "so the results do not overwrite them.")
        text_col, rows, empty, bad = text_cols[0], [], [], []
        for where, row in read_table(path):
            where = where.replace(f"{path}: ", "", 1)
            if isinstance(row, BadRow):
                raise CsvInputError(f"{name}: {where} has {row.problem}.")
            if len(rows) == MAX_CSV_ROWS:
                raise CsvInputError(f"{name} has more than {MAX_CSV_ROWS} rows: the limit here is "
                                    f"{MAX_CSV_ROWS}. Split the file, or run `finsent classify` locally.")
            if not row[text_col].strip():
                empty.append(where)
            elif problem := text_problem(row[text_col]):
                bad.append(f"{where}: {problem}")
            rows.append(row)
    except TableError as exc:
        raise CsvInputError(str(exc).replace(str(path), name)) from None
    if not rows:
        raise CsvInputError(f"{name} has no data rows under its header.")
    if empty:
        more = f" and {len(empty) - 5} more" if len(empty) > 5 else ""
        raise CsvInputError(f"{name}: empty text in {', '.join(empty[:5])}{more}.")
    if bad:
        more = f" ({len(bad) - 1} more rows like it)" if len(bad) > 1 else ""
        raise CsvInputError(f"{name}: {bad[0]}{more}")
    return columns, rows, text_col


def classify_csv_file(classifier: FinSentClassifier, path: str | Path, scheme: str, progress=None,
                      out_dir: str | Path | None = None) -> Path:
    """Classify every row's text; write the input columns + results to a new CSV and return its path.

    The CSV goes into ``out_dir`` (default: a new temporary folder); every cell is spreadsheet-safe.
    """
    if scheme not in SCHEMES:
        raise CsvInputError(f"unknown label scheme {scheme!r}: choose 3 or 7 classes")
    columns, rows, text_col = read_csv_texts(path)
    labels = SCHEMES[scheme]
    header = [*columns, "predicted_label", *(prob_column(label) for label in labels), "text_truncated"]
    if len(set(header)) != len(header):  # read_csv_texts refuses result-like names; never overwrite a column
        raise CsvInputError(f"{Path(path).name}: a result column would overwrite an input column ({header})")
    clipped = [clip(row[text_col].strip()) for row in rows]
    done, predictions = 0, []
    if progress is not None:
        progress((0, len(rows)), desc="Classifying", unit="rows")
    for chunk in iter_chunks([text for text, _ in clipped], CSV_CHUNK):
        predictions += classifier.classify(chunk, scheme, batch_size=CSV_CHUNK)
        done += len(chunk)
        if progress is not None:  # not truthiness: gr.Progress has a __len__ (0 when idle)
            progress((done, len(rows)), desc="Classifying", unit="rows")
    folder = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="finsent-csv-"))
    out = folder / f"{Path(path).stem}-finsent.csv"
    with open(out, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([spreadsheet_safe(c) for c in header])
        for row, pred, (_, cut) in zip(rows, predictions, clipped):
            cells = [*(row[c] for c in columns), pred.label, *(f"{pred.probs[label]:.6f}" for label in labels),
                     cut or pred.truncated]
            writer.writerow([spreadsheet_safe(c) for c in cells])
    logger.info("classified %d rows of %s", len(rows), Path(path).name)
    return out


class ResultFolders:
    """The folders the app writes result CSVs into, one per job, each deleted once older than ``age`` seconds.

    Gradio copies a returned file into its own cache (emptied by ``delete_cache``), so the app's copy is
    needed only until its job returns: each new job deletes the earlier folders older than ``age`` (every
    earlier one for age 0). Only folders this object created are ever deleted; ``root`` (default: a new
    temporary folder, removed at exit) holds them. ``age=None`` keeps every folder.
    """

    def __init__(self, root: str | Path | None = None, age: float | None = DELETE_CACHE[1]):
        self.age = age
        if root is None:
            self.root = Path(tempfile.mkdtemp(prefix="finsent-space-results-"))
            weakref.finalize(self, shutil.rmtree, self.root, ignore_errors=True)
        else:
            self.root = Path(root)
            self.root.mkdir(parents=True, exist_ok=True)
        self._made: list[tuple[float, Path]] = []  # (time.monotonic() at creation, folder)
        self._lock = threading.Lock()

    def new(self) -> Path:
        """A new empty folder for one job (after deleting the expired ones)."""
        with self._lock:
            self.sweep()
            folder = Path(tempfile.mkdtemp(prefix="job-", dir=self.root))
            self._made.append((time.monotonic(), folder))
            return folder

    def sweep(self) -> list[Path]:
        """Delete the folders older than ``age``; return them."""
        if self.age is None:
            return []
        now, gone = time.monotonic(), []
        for made, folder in list(self._made):
            if now - made >= self.age:
                shutil.rmtree(folder, ignore_errors=True)
                self._made.remove((made, folder))
                gone.append(folder)
        return gone


def build_demo(classifier: FinSentClassifier, *, queue_size: int = QUEUE_SIZE,
               delete_cache: tuple[int, int] | None = DELETE_CACHE, results_dir: str | Path | None = None) -> gr.Blocks:
    """The page and its API around one loaded classifier (queue configured; not launched).

    ``delete_cache`` (frequency, age) in seconds, Gradio's: uploads and results older than age are deleted
    (None: kept until the server stops). ``results_dir``: where the app writes result CSVs (default: a
    temporary folder); its job folders older than the same age are deleted when a new CSV job starts.
    """
    results = ResultFolders(results_dir, age=delete_cache[1] if delete_cache else None)

    def on_classify(text: list[str], scheme: list[str]):  # batch=True: one item per queued request
        """Financial sentiment of news headlines or tweets, with every label's probability.

        Args:
            text: one financial text per line (up to 50 lines)
            scheme: "3" (negative/neutral/positive) or "7" (strong/moderately/mildly negative, neutral, ... positive)
        """
        return classify_requests(classifier, text, scheme)

    # Gradio injects the live progress tracker through this default value (its documented idiom).
    def on_csv(file: str | None, scheme: str, progress=gr.Progress()):  # noqa: B008
        try:
            if not file:
                raise CsvInputError("Upload a CSV file with a 'text' column first.")
            return str(classify_csv_file(classifier, file, scheme, progress, out_dir=results.new()))
        except CsvInputError as exc:
            raise refused("/classify_csv", exc) from None

    with gr.Blocks(title="Llama-FinSent-S", delete_cache=delete_cache) as demo:
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
        # preprocess=False: classify_requests sees the values sent, so a list sent as the text is refused, not str()-ed.
        gr.on([button.click, text.submit], on_classify, inputs=[text, scheme], outputs=[label, table, notice],
              api_name="classify", batch=True, max_batch_size=MAX_BATCH, concurrency_limit=1,
              concurrency_id="classify", preprocess=False)
        with gr.Accordion(f"Classify a CSV file (a 'text' column, up to {MAX_CSV_ROWS} rows)", open=True):
            with gr.Row():
                upload = gr.File(label="CSV to classify", file_types=[".csv"], elem_id="finsent-csv-in")
                result = gr.File(label="Results CSV", interactive=False, elem_id="finsent-csv-out")
            csv_button = gr.Button("Classify CSV", elem_id="finsent-csv-button")
        # Its own queue: a CSV job (minutes) runs beside /classify requests, never in front of them.
        csv_button.click(on_csv, inputs=[upload, scheme], outputs=result, api_name="classify_csv",
                         concurrency_limit=1, concurrency_id="csv")
    return demo.queue(max_size=queue_size, default_concurrency_limit=1)


def mcp_refusal(path: str, body: bytes) -> tuple[int, dict] | None:
    """(HTTP status, JSON answer) for an MCP request the app refuses itself, or None to pass it on: a body that is
    not UTF-8 (the MCP library answers 500 and logs a traceback), a tool argument holding a lone surrogate (a JSON
    escape such as \\ud800; Gradio's UTF-8 loopback call fails with a raw codec message): check_text's message as
    the tool's error (over SSE, where a POST only delivers the message, as a 400)."""
    try:
        request = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        message = f"Parse error: the request body is not UTF-8 (byte 0x{body[exc.start]:02x} at offset {exc.start})"
        logger.warning("MCP request refused: %s", message)
        return 400, {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": message + ": send UTF-8"}}
    except ValueError:  # not JSON: the MCP server's own parse error (400) says so
        return None
    params = request.get("params") if isinstance(request, dict) and request.get("method") == "tools/call" else None
    arguments = params.get("arguments") if isinstance(params, dict) else None
    for name, value in (arguments if isinstance(arguments, dict) else {}).items():
        if isinstance(value, str) and any("\ud800" <= char <= "\udfff" for char in value):
            message = f"argument {name!r}: {text_problem(value)}"  # check_text: the character and its position
            logger.warning("MCP tool call refused: %s", message)
            if path.rstrip("/").endswith("/messages"):
                return 400, {"jsonrpc": "2.0", "id": request.get("id"), "error": {"code": -32602, "message": message}}
            result = {"content": [{"type": "text", "text": message}], "isError": True}
            return 200, {"jsonrpc": "2.0", "id": request.get("id"), "result": result}
    return None


class McpInputGuard:
    """ASGI middleware before Gradio's MCP server (POSTs under /gradio_api/mcp): answers what mcp_refusal refuses."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].startswith("/gradio_api/mcp"):
            return await self.app(scope, receive, send)
        chunks, message = [], {"more_body": True}
        while message.get("more_body"):
            message = await receive()
            if message["type"] != "http.request":  # the client left
                return None
            chunks.append(message.get("body", b""))
        body = b"".join(chunks)
        if answer := mcp_refusal(scope["path"], body):
            return await JSONResponse(answer[1], status_code=answer[0])(scope, receive, send)
        messages = iter([{"type": "http.request", "body": body, "more_body": False}])

        async def replay():  # the body as read, then whatever the client sends next (a disconnect)
            return next(messages, None) or await receive()

        return await self.app(scope, replay, send)


def launch(demo: gr.Blocks, **kwargs):
    """Launch with the page's look; keyword arguments (server_name, prevent_thread_lock...) win."""
    options = {"theme": gr.themes.Soft(), "show_error": True, "max_file_size": "20mb",
               "app_kwargs": {"middleware": [Middleware(McpInputGuard)]}}
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


def mcp_available() -> bool:
    """Whether to serve the MCP tools: the `mcp` package is installed (gradio[mcp]) and FINSENT_MCP is not "0"."""
    import importlib.util

    return os.environ.get("FINSENT_MCP", "1") != "0" and importlib.util.find_spec("mcp") is not None


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    model = model_choice()
    logger.info("finsent code from %s; loading model %s", Path(finsent.__file__).resolve().parent, model)
    try:
        classifier = FinSentClassifier.from_pretrained(model)
    except finsent.ModelNotAvailableError as exc:  # say what to do, not a traceback
        raise SystemExit(f"app.py: {exc}") from None
    launch(build_demo(classifier), mcp_server=mcp_available())


if __name__ == "__main__":
    main()
