"""Design figures are pure functions of a result table; each plotted number is checked against the table."""

import numpy as np
import pandas as pd
import pytest

from fm_engine.elements import element_symbols
from fm_engine.plots import (
    compare_runs,
    distinct_recipes,
    element_counts,
    element_frequency,
    pareto_front,
    recipe_heatmap,
    seed_vs_optimized,
    trajectory_figure,
)
from fm_engine.plots.ptable import element_position

SYMBOLS = element_symbols()

RECIPES = pd.DataFrame(
    {
        "formula": ["Fe0.5Ni0.5", "Fe0.7Co0.3", "Ni1", "Fe0.4Ni0.4Cr0.2"],
        "seed": ["FeNi", "FeCo", "Ni", "FeNiCr"],
        "x_Fe": [0.5, 0.7, 0.0, 0.4],
        "x_Ni": [0.5, 0.0, 1.0, 0.4],
        "x_Co": [0.0, 0.3, 0.0, 0.0],
        "x_Cr": [0.0, 0.0, 0.0, 0.2],
        "x_Cu": [0.0, 0.0, 0.0, 0.0],
        "bulk_modulus seed [GPa]": [150.0, 160.0, 180.0, 170.0],
        "bulk_modulus [GPa]": [200.0, 210.0, 190.0, 205.0],
    }
)


def test_element_frequency_is_the_share_of_recipes_with_the_element():
    assert element_frequency(RECIPES) == {"Fe": 0.75, "Ni": 0.75, "Co": 0.25, "Cr": 0.25}


def test_recipe_heatmap_counts_recipes_and_frames_elements_absent_from_seeds():
    figure = recipe_heatmap(RECIPES, seed_elements=["Fe", "Ni", "Co"])
    r, c = element_position(26)  # Fe
    assert figure.data[1].z[r][c] == 3
    assert figure.data[1].colorbar.title.text == "distinct recipes"
    r, c = element_position(24)  # Cr: in no seed
    assert [(s.x0 + 0.5, s.y0 + 0.5) for s in figure.layout.shapes] == [(c, r)]


def cell_value(figure, symbol: str, trace: int = 1) -> float:
    r, c = element_position(SYMBOLS.index(symbol) + 1)
    return figure.data[trace].z[r][c]


def test_near_duplicates_are_counted_once():
    """12 recipes, 6 of them Ta0.9Al0.1 (near-duplicates of rank 1): Ta is in 1 + 1 distinct recipes, not 7."""
    rows = [{"x_Ta": 0.9 + 0.001 * (i > 0), "x_Al": 0.1 - 0.001 * (i > 0), "x_W": 0.0, "duplicate_of_rank": int(i > 0)}
            for i in range(6)]  # fmt: skip
    rows += [{"x_Ta": 0.5, "x_Al": 0.1, "x_W": 0.4, "duplicate_of_rank": 0}]
    table = pd.DataFrame(rows)
    assert element_counts(table) == {"Ta": 2, "Al": 2, "W": 1}
    figure = recipe_heatmap(table)
    assert cell_value(figure, "Ta") == 2 and "2 distinct recipes" in figure.layout.title.text


def test_without_a_duplicate_rule_recipes_equal_as_printed_are_one():
    table = pd.DataFrame({"x_Fe": [0.5, 0.50004, 0.6], "x_Ni": [0.5, 0.49996, 0.4]})
    assert len(distinct_recipes(table)) == 2
    assert element_counts(table) == {"Fe": 2, "Ni": 2}


def test_allowed_but_unused_elements_differ_from_forbidden_ones():
    figure = recipe_heatmap(RECIPES, allowed=["Fe", "Ni", "Co", "Cr", "Cu", "Mo"])
    unused = next(t for t in figure.data if t.name == "allowed, not used (0)" and t.type == "heatmap")
    for symbol in ("Cu", "Mo"):  # allowed, in no recipe: a light tile with a 0
        r, c = element_position(SYMBOLS.index(symbol) + 1)
        assert unused.z[r][c] == 0 and unused.text[r][c] == f"{symbol}<br>0"
    r, c = element_position(SYMBOLS.index("Fe") + 1)
    assert np.isnan(unused.z[r][c])  # used: coloured by its count instead
    excluded = next(t for t in figure.data if t.name == "not allowed")
    struck = {(x, y) for x, y in zip(excluded.x, excluded.y, strict=True)}
    for symbol in ("W", "O", "H"):
        r, c = element_position(SYMBOLS.index(symbol) + 1)
        assert (c, r) in struck
    for symbol in ("Fe", "Cu", "Mo"):
        r, c = element_position(SYMBOLS.index(symbol) + 1)
        assert (c, r) not in struck
    assert len(struck) == len(SYMBOLS) - 6
    assert figure.layout.showlegend and {"not allowed", "allowed, not used (0)"} <= {t.name for t in figure.data}


def test_seed_vs_optimized_plots_the_table_in_its_unit():
    figure = seed_vs_optimized(RECIPES, "bulk_modulus", unit="GPa", target=200.0)
    recipes = figure.data[1]
    assert list(recipes.x) == list(RECIPES["bulk_modulus seed [GPa]"])
    assert list(recipes.y) == list(RECIPES["bulk_modulus [GPa]"])
    assert figure.layout.xaxis.title.text == "seed bulk_modulus (GPa), projected onto the constraints"
    assert "moved onto the constraints" in figure.layout.title.text  # the caption says how seeds are scored
    assert figure.layout.yaxis.title.text == "designed bulk_modulus (GPa)"
    assert [shape.y0 for shape in figure.layout.shapes] == [200.0]
    assert "target 200 GPa" in figure.layout.annotations[0].text
    ranged = seed_vs_optimized(RECIPES, "bulk_modulus", unit="GPa", target=[180.0, 220.0])
    assert sorted(shape.y0 for shape in ranged.layout.shapes) == [180.0, 220.0]


def test_seed_vs_optimized_draws_the_spread_on_both_axes_when_the_table_has_it():
    spread = RECIPES.assign(**{"bulk_modulus seed_std [GPa]": [5.0, 6.0, 7.0, 8.0],
                               "bulk_modulus_std [GPa]": [30.0, 1.0, 2.0, 3.0]})  # fmt: skip
    recipes = seed_vs_optimized(spread, "bulk_modulus", unit="GPa").data[1]
    assert list(recipes.error_x.array) == list(spread["bulk_modulus seed_std [GPa]"])
    assert list(recipes.error_y.array) == list(spread["bulk_modulus_std [GPa]"])
    one_to_one = seed_vs_optimized(spread, "bulk_modulus", unit="GPa").data[0]
    assert max(one_to_one.y) >= 200.0 + 30.0  # the bars fit in the 1:1 line's extent
    off = seed_vs_optimized(spread, "bulk_modulus", unit="GPa", error_bars=False).data[1]
    assert off.error_x.array is None and off.error_y.array is None
    plain = seed_vs_optimized(RECIPES, "bulk_modulus", unit="GPa").data[1]  # a single model's table: no bars
    assert plain.error_x.array is None and plain.error_y.array is None


def test_seed_vs_optimized_hover_gives_each_value_with_its_spread_and_unit():
    """An ensemble's design: the hover text reads "seed 150 ± 5 GPa -> 200 ± 30 GPa" (#17 leftover)."""
    spread = RECIPES.assign(**{"bulk_modulus seed_std [GPa]": [5.0, 6.0, 7.0, 8.0],
                               "bulk_modulus_std [GPa]": [30.0, 1.0, 2.0, 3.0]})  # fmt: skip
    recipes = seed_vs_optimized(spread, "bulk_modulus", unit="GPa").data[1]
    for text, row in zip(recipes.text, spread.to_dict("records"), strict=True):
        seed, designed = row["bulk_modulus seed [GPa]"], row["bulk_modulus [GPa]"]
        seed_std, std = row["bulk_modulus seed_std [GPa]"], row["bulk_modulus_std [GPa]"]
        assert f"seed {seed:.4g} ± {seed_std:.2g} GPa -> {designed:.4g} ± {std:.2g} GPa" in text
        assert row["formula"] in text
    plain = seed_vs_optimized(RECIPES, "bulk_modulus", unit="GPa").data[1]  # a single model: values and unit only
    assert "seed 150 GPa -> 200 GPa" in plain.text[0] and "±" not in "".join(plain.text)


def brute_force_front(points: np.ndarray) -> set[int]:
    return {
        i
        for i, p in enumerate(points)
        if not any(np.all(q >= p) and np.any(q > p) for j, q in enumerate(points) if j != i)
    }


@pytest.mark.parametrize("maximize", [(True, True), (True, False), (False, False)])
def test_pareto_front_is_exactly_the_non_dominated_recipes(maximize):
    rng = np.random.default_rng(3)
    points = np.round(rng.uniform(0, 10, size=(60, 2)))  # rounding makes ties
    table = pd.DataFrame({"formula": [f"r{i}" for i in range(60)], "a [GPa]": points[:, 0], "b [K]": points[:, 1]})
    figure = pareto_front(table, "a [GPa]", "b [K]", maximize=maximize)
    expected = brute_force_front(points * np.where(maximize, 1.0, -1.0))
    front = figure.data[1]
    assert set(front.text) == {f"r{i}" for i in expected}
    assert list(front.x) == sorted(front.x)
    assert figure.layout.xaxis.title.text == "a [GPa]" and figure.layout.yaxis.title.text == "b [K]"


def test_compare_runs_shows_mean_and_spread_per_run():
    runs = {"A": pd.DataFrame({"objective": [1.0, 3.0]}), "B": pd.DataFrame({"objective": [2.0, 2.0]})}
    bars = compare_runs(runs, ["objective"]).data[0]
    assert list(bars.x) == ["A", "B"]
    assert list(bars.y) == [2.0, 2.0]
    assert list(bars.error_y.array) == [1.0, 0.0]


def test_trajectory_band_spans_the_rows_and_the_line_is_their_mean():
    trajectory = [{"step": [s, s], "objective": [1.0 / (s + 1), 3.0 / (s + 1)]} for s in (0, 10, 20)]
    band, line, last = trajectory_figure(trajectory).data
    assert list(line.x) == [0, 10, 20]
    assert list(line.y) == pytest.approx([2.0, 2.0 / 11, 2.0 / 21])
    assert list(last.x) == [20] and list(last.y) == pytest.approx([2.0 / 21])  # the reported recipes, marked
    assert max(band.y) == 3.0 and min(band.y) == pytest.approx(1.0 / 21)
    with pytest.raises(ValueError, match="record_trajectory"):
        trajectory_figure([])


def test_trajectory_has_a_panel_per_term_and_names_the_units():
    trajectory = [{"step": [s], "objective": [1.5], "bulk_modulus": [1.0], "diversity (x mixing entropy)": [0.5]}
                  for s in (0, 1)]  # fmt: skip
    figure = trajectory_figure(trajectory)
    titles = [a.text for a in figure.layout.annotations]
    assert titles == ["objective (the sum of the terms below)", "bulk_modulus", "diversity (x mixing entropy)"]
    assert "the table's objective units" in figure.layout.title.text
    latent = trajectory[:1] + [{"step": [2], "objective": [1.2], "bulk_modulus": [1.2]}]  # no alignment at the recipe
    alignment = trajectory_figure(latent).data[-2]
    assert alignment.y[0] == 0.5 and np.isnan(alignment.y[1])


@pytest.mark.parametrize(
    "build",
    [
        lambda **layout: recipe_heatmap(RECIPES, ["Fe"], **layout),
        lambda **layout: seed_vs_optimized(RECIPES, "bulk_modulus", unit="GPa", **layout),
        lambda **layout: pareto_front(RECIPES, "x_Fe", "bulk_modulus [GPa]", **layout),
        lambda **layout: compare_runs({"A": RECIPES}, ["bulk_modulus [GPa]"], **layout),
        lambda **layout: trajectory_figure([{"step": [0], "objective": [1.0]}], **layout),
    ],
    ids=["recipe_heatmap", "seed_vs_optimized", "pareto_front", "compare_runs", "trajectory_figure"],
)
def test_layout_passes_through_and_wins_over_the_defaults(build):
    default = build()
    figure = build(height=777, title="mine", paper_bgcolor="black")
    assert default.layout.height != 777 and default.layout.title.text != "mine"
    assert figure.layout.height == 777 and figure.layout.title.text == "mine"
    assert figure.layout.paper_bgcolor == "black"
    assert len(figure.data) == len(default.data)  # the same traces
