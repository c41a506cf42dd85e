"""Reading CSV bytes of any common dialect: delimiter, decimal comma and encoding detected and described."""

import numpy as np
import pandas as pd
import pytest

from fm_engine.data.csv_format import read_csv_data, sniff_delimiter


def test_a_semicolon_file_with_decimal_commas_reads_numbers():
    frame, found = read_csv_data(b"Formula;Eg (eV);note\nFe2O3;2,1;a, b\nNaCl;8;x\nSi;-1,5e-1;y\n", source="gaps.csv")
    assert list(frame.columns) == ["Formula", "Eg (eV)", "note"]
    np.testing.assert_allclose(frame["Eg (eV)"], [2.1, 8.0, -0.15])
    assert list(frame["note"]) == ["a, b", "x", "y"]  # text with a comma stays text
    assert found.delimiter == ";" and found.decimal_comma_columns == ("Eg (eV)",)
    assert found.describe() == "semicolon-separated, decimal comma, UTF-8"


@pytest.mark.parametrize(
    ("data", "encoding", "label"),
    [
        ("formula,T (°C),d (Å)\nFe,25,2.5\n".encode("utf-8-sig"), "utf-8-sig", "UTF-8 with BOM"),
        ("formula,T (°C),d (Å)\nFe,25,2.5\n".encode("cp1252"), "cp1252", "cp1252 (Windows)"),
        ("formula,T (°C),d (Å)\nFe,25,2.5\n".encode(), "utf-8", "UTF-8"),
    ],
)
def test_the_encoding_is_detected(data, encoding, label):
    frame, found = read_csv_data(data, source="x.csv")
    assert list(frame.columns) == ["formula", "T (°C)", "d (Å)"]
    assert found.encoding == encoding and found.describe() == f"comma-separated, decimal point, {label}"


def test_tabs_and_a_single_column_and_ties():
    frame, found = read_csv_data(b"formula\tgap\nFe2O3\t2,1\n", source="x.txt")
    assert found.describe() == "tab-separated, decimal comma, UTF-8" and frame["gap"].tolist() == [2.1]
    assert sniff_delimiter("formula\nFe\n") == ","
    assert sniff_delimiter("formula;gap, eV\nFe2O3;2,1\n") == ";"  # one comma per line as well: semicolon wins


def test_a_comma_file_reads_as_pandas_reads_it():
    data = b'formula,y,z,label\nFe,"1,5",2.5,n/a\nNi,2,-,ok\n'
    frame, found = read_csv_data(data, source="x.csv")
    expected = pd.read_csv(pd.io.common.BytesIO(data), keep_default_na=False, na_values=["n/a", "-"])
    pd.testing.assert_frame_equal(frame, expected)
    assert found.decimal_comma_columns == () and frame["label"].isna().tolist() == [True, False]


def test_a_column_with_decimal_points_is_not_read_with_a_decimal_comma():
    frame, found = read_csv_data(b"f;a;b\nFe;2,1;2.5\nNi;3;3,5\n", source="x.csv")
    assert found.decimal_comma_columns == ("a",) and frame["b"].tolist() == ["2.5", "3,5"]


@pytest.mark.parametrize(
    ("data", "message"),
    [(b"", "x.csv: the file is empty"), (b"a,b\n", "x.csv: the table has no rows"),
     (b'a,b\nFe,"1\n', "x.csv: malformed CSV"), (b"\x80\x04\x95\x00\x00", "x.csv: not a text file")],
)  # fmt: skip
def test_unreadable_bytes_name_the_source(data, message):
    with pytest.raises(ValueError, match=message):
        read_csv_data(data, source="x.csv")


def test_without_guessing_only_utf8_is_read():
    with pytest.raises(ValueError, match="x.csv: not UTF-8 text \\(cannot decode byte 0xb0\\)"):
        read_csv_data("a,T °C\nFe,1\n".encode("cp1252"), source="x.csv", guess_encoding=False)


def test_thousands_groups_with_a_decimal_comma_read_as_numbers():
    """A European spreadsheet export: ``1.234,5`` is 1234.5, and then ``1.500`` in the same column is 1500."""
    data = b"Formula;Tm (K);Eg (eV)\nW;3.695,0;0\nFe;1.811;0\nAl2O3;2.345,5;8,8\nSi;1.687,25;1,1\n"
    frame, found = read_csv_data(data, source="melting.csv")
    np.testing.assert_allclose(frame["Tm (K)"], [3695.0, 1811.0, 2345.5, 1687.25])
    np.testing.assert_allclose(frame["Eg (eV)"], [0.0, 0.0, 8.8, 1.1])
    assert found.decimal_comma_columns == ("Tm (K)", "Eg (eV)")


def test_a_dot_without_a_grouped_decimal_comma_stays_a_decimal_point():
    frame, found = read_csv_data(b"Formula;x\nW;1.500\nFe;2.25\n", source="points.csv")
    assert found.decimal_comma_columns == ()
    assert [float(v) for v in frame["x"]] == [1.5, 2.25]  # never 1500
