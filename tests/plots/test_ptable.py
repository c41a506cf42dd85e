"""Periodic-table layout and heatmap: every element in its usual cell, values where they belong."""

import math

import pytest

from fm_engine.elements import element_symbols
from fm_engine.plots import element_position, ptable_heatmap

SYMBOLS = element_symbols()


def z_of(symbol: str) -> int:
    return SYMBOLS.index(symbol) + 1


@pytest.mark.parametrize(
    ("symbol", "row", "column"),
    [
        ("H", 0, 0), ("He", 0, 17), ("Li", 1, 0), ("B", 1, 12), ("Ne", 1, 17), ("Al", 2, 12), ("K", 3, 0),
        ("Fe", 3, 7), ("Kr", 3, 17), ("Ag", 4, 10), ("Cs", 5, 0), ("Ba", 5, 1), ("Hf", 5, 3), ("Au", 5, 10),
        ("Rn", 5, 17), ("Fr", 6, 0), ("Ra", 6, 1), ("La", 8, 2), ("Lu", 8, 16), ("Ac", 9, 2), ("Pu", 9, 7),
    ],
)  # fmt: skip
def test_elements_sit_in_their_group_and_period(symbol, row, column):
    assert element_position(z_of(symbol)) == (row, column)


def test_every_element_has_its_own_cell():
    cells = [element_position(z) for z in range(1, len(SYMBOLS) + 1)]
    assert len(set(cells)) == len(cells)
    assert all(0 <= r < 10 and 0 <= c < 18 for r, c in cells)


def cell(figure, symbol: str) -> tuple[float, str]:
    """(value, text) of the coloured trace at ``symbol``'s cell."""
    r, c = element_position(z_of(symbol))
    trace = figure.data[1]
    return trace.z[r][c], trace.text[r][c]


def test_values_land_in_their_cells_and_missing_elements_are_grey():
    figure = ptable_heatmap({"Fe": 7.5, "O": 0.25, "Cu": math.nan}, colorbar_title="GPa", value_format=".3g")
    value, text = cell(figure, "Fe")
    assert value == 7.5 and "Fe" in text and "7.5" in text
    assert cell(figure, "O")[0] == 0.25
    for missing in ("Cu", "Ni"):  # NaN counts as missing
        value, text = cell(figure, missing)
        assert math.isnan(value) and text == missing
        r, c = element_position(z_of(missing))
        assert figure.data[0].z[r][c] == 0.0  # the grey background tile
    assert figure.data[1].colorbar.title.text == "GPa"
    finite = [v for row in figure.data[1].z for v in row if not math.isnan(v)]
    assert sorted(finite) == [0.25, 7.5]


def test_highlight_frames_known_elements_only():
    figure = ptable_heatmap({"Fe": 1.0}, highlight=["Fe", "Xx"], highlight_label="new")
    assert len(figure.layout.shapes) == 1
    shape = figure.layout.shapes[0]
    r, c = element_position(z_of("Fe"))
    assert (shape.x0, shape.x1, shape.y0, shape.y1) == (c - 0.5, c + 0.5, r - 0.5, r + 0.5)
    assert "new" in figure.layout.annotations[0].text
    assert not ptable_heatmap({"Fe": 1.0}).layout.shapes


def test_layout_passes_through_after_the_tables_own_layout():
    figure = ptable_heatmap({"Fe": 1.0}, title="coverage", height=600, margin={"t": 5})
    assert figure.layout.height == 600 and figure.layout.title.text == "coverage"
    assert figure.layout.margin.t == 5 and figure.layout.margin.l == 10  # merged into the table's margins
    assert figure.layout.yaxis.autorange == "reversed"  # periods run down the page
