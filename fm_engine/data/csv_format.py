"""Reading CSV bytes whatever their dialect: the delimiter (comma, semicolon, tab), a decimal comma (``2,1`` for
2.1, as spreadsheets write in much of Europe) and the encoding (UTF-8, UTF-8 with a byte-order mark, cp1252 /
latin-1) are detected from the bytes, and the detected format is returned with the table so it can be shown."""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import re
from dataclasses import dataclass

import pandas as pd

MISSING_MARKERS = ("", "#N/A", "#N/A N/A", "#NA", "<NA>", "N/A", "NA", "NULL", "None", "n/a", "null", "-")
"""CSV cells that mean "no value" (pandas' defaults without the spellings of NaN, plus ``-``): a row whose target is
missing is left out of that task and counted as such; a target cell that says ``nan`` or ``inf`` is a bad row."""

DELIMITERS = {",": "comma-separated", ";": "semicolon-separated", "\t": "tab-separated"}
ENCODINGS = {"utf-8": "UTF-8", "utf-8-sig": "UTF-8 with BOM", "cp1252": "cp1252 (Windows)", "latin-1": "latin-1"}
SAMPLE_RECORDS = 500  # records read per candidate delimiter to decide which one splits the file consistently
DECIMAL_COMMA = re.compile(r"\s*[+-]?(\d+,\d*|,\d+|\d+)([eE][+-]?\d+)?\s*")
DECIMAL_POINT = re.compile(r"\s*[+-]?(\d+\.\d*|\.\d+)([eE][+-]?\d+)?\s*")
GROUPED = re.compile(r"\s*[+-]?\d{1,3}(\.\d{3})+(,\d*)?\s*")  # 1.234,5 or 1.234: dots group thousands
GROUPED_WITH_DECIMALS = re.compile(r"\s*[+-]?\d{1,3}(\.\d{3})+,\d*\s*")  # 1.234,5: unambiguous


@dataclass(frozen=True)
class CsvFormat:
    """How a CSV file was read: ``delimiter`` (``,`` ``;`` or tab), the columns read with a decimal comma, and
    the text ``encoding`` (a Python codec name, a key of :data:`ENCODINGS`)."""

    delimiter: str = ","
    decimal_comma_columns: tuple[str, ...] = ()
    encoding: str = "utf-8"

    def describe(self) -> str:
        """E.g. ``semicolon-separated, decimal comma, cp1252 (Windows)``."""
        decimal = "decimal comma" if self.decimal_comma_columns else "decimal point"
        return f"{DELIMITERS[self.delimiter]}, {decimal}, {ENCODINGS[self.encoding]}"


def decode_text(data: bytes, *, source: str, guess_encoding: bool = True) -> tuple[str, str]:
    """``(text, encoding)``: UTF-8 (a byte-order mark is dropped), else cp1252, else latin-1 (every byte is a
    latin-1 character). ``guess_encoding=False`` refuses text that is not UTF-8 with a ``ValueError`` naming
    ``source`` and the first byte that is not UTF-8."""
    if b"\x00" in data[:65536]:
        raise ValueError(f"{source}: not a text file (it holds NUL bytes: binary data or UTF-16); save it as CSV")
    body, encoding = (
        (data[len(codecs.BOM_UTF8) :], "utf-8-sig") if data.startswith(codecs.BOM_UTF8) else (data, "utf-8")
    )
    try:
        return body.decode("utf-8"), encoding
    except UnicodeDecodeError as error:
        if not guess_encoding:
            byte = error.object[error.start : error.start + 1].hex()
            raise ValueError(f"{source}: not UTF-8 text (cannot decode byte 0x{byte}); save it as UTF-8 CSV") from None
    try:
        return body.decode("cp1252"), "cp1252"
    except UnicodeDecodeError:
        return body.decode("latin-1"), "latin-1"


def _field_counts(text: str, delimiter: str) -> list[int]:
    """Fields per non-blank record among the first :data:`SAMPLE_RECORDS` (quotes respected)."""
    try:
        records = itertools.islice(csv.reader(io.StringIO(text), delimiter=delimiter), SAMPLE_RECORDS)
        return [len(record) for record in records if record]
    except csv.Error:
        return []


def sniff_delimiter(text: str) -> str:
    """The delimiter that splits the header into at least two columns and the most records into as many fields
    as the header. A tie (e.g. a semicolon file whose header and rows each hold one decimal comma) goes to tab,
    then semicolon, then comma; a file no delimiter splits is comma-separated (one column)."""
    best, best_share = ",", -1.0
    for delimiter in ("\t", ";", ","):
        counts = _field_counts(text, delimiter)
        if not counts or counts[0] < 2:
            continue
        share = sum(count == counts[0] for count in counts) / len(counts)
        if share > best_share:
            best, best_share = delimiter, share
    return best


def _decimal_comma_column(cells: pd.Series) -> pd.Series | None:
    """The column with its decimal-comma numbers (``2,1``) read as floats, or None when it has none (or also
    holds decimal-point numbers such as ``2.5``: then commas are not decimal marks). A column holding a number with
    thousands groups and a decimal comma (``1.234,5``) reads every ``1.234`` in it as 1234 too (a European
    spreadsheet's export); without such a number, ``1.234`` stays a decimal point. Other text stays as is."""
    text = cells.dropna()
    if not len(text) or not all(isinstance(v, str) for v in text):
        return None
    if text.str.fullmatch(GROUPED_WITH_DECIMALS).any():  # 1.234,5 somewhere: dots group thousands in this column
        numeric = text[text.str.fullmatch(DECIMAL_COMMA) | text.str.fullmatch(GROUPED)]
        numeric = numeric.str.replace(".", "", regex=False)
    else:
        numeric = text[text.str.fullmatch(DECIMAL_COMMA)]
        if not numeric.str.contains(",").any() or text.str.fullmatch(DECIMAL_POINT).any():
            return None
    converted = cells.astype(object).copy()
    converted[numeric.index] = numeric.str.replace(",", ".", regex=False).str.strip().astype(float)
    return converted.astype(float) if len(numeric) == len(text) else converted


def read_csv_data(data: bytes, *, source: str, guess_encoding: bool = True) -> tuple[pd.DataFrame, CsvFormat]:
    """Read CSV ``data`` into a table and say how it was read; ``ValueError`` naming ``source`` when it cannot be.

    Empty cells and :data:`MISSING_MARKERS` become NaN. With a semicolon or tab delimiter, a column whose numbers
    are written with a decimal comma is read as numbers (never in a comma-separated file, where ``"1,5"`` in
    quotes is ambiguous). ``guess_encoding``: see :func:`decode_text`.
    """
    text, encoding = decode_text(data, source=source, guess_encoding=guess_encoding)
    if not text.strip():
        raise ValueError(f"{source}: the file is empty")
    delimiter = sniff_delimiter(text)
    try:
        frame = pd.read_csv(io.StringIO(text), sep=delimiter, keep_default_na=False, na_values=list(MISSING_MARKERS))
    except pd.errors.EmptyDataError:
        raise ValueError(f"{source}: the file is empty") from None
    except pd.errors.ParserError as error:
        raise ValueError(f"{source}: malformed CSV ({str(error).strip()})") from None
    if frame.empty:
        raise ValueError(f"{source}: the table has no rows")
    frame.columns = [str(c) for c in frame.columns]
    converted: list[str] = []
    if delimiter != ",":
        for column in frame.columns:
            if (
                not pd.api.types.is_numeric_dtype(frame[column])
                and (numbers := _decimal_comma_column(frame[column])) is not None
            ):
                frame[column] = numbers
                converted.append(column)
    return frame, CsvFormat(delimiter=delimiter, decimal_comma_columns=tuple(converted), encoding=encoding)
