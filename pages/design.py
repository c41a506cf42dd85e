"""Inverse design: targets and constraints -> a run with progress -> ranked recipes, figures and export."""

from __future__ import annotations

from typing import Any

import streamlit as st

from fm_engine.elements import element_symbols
from fm_engine.inverse import PRESET_DESCRIPTIONS, DesignResult, element_presets
from fm_engine.inverse.design import MAX_RESTARTS
from workbench import design, design_settings, state
from workbench.components.design_targets import target_inputs
from workbench.components.element_picker import element_picker
from workbench.components.predictions import batch_impossible_warning
from workbench.resources import active_checkpoint_or_explain, is_foundation

kept = design.FORM.widget  # a widget whose value survives page switches
kept_setting = design.kept_setting  # the same for a DesignConfig setting: default and help text from there


# ---------------------------------------------------------------------- the form
def constraint_inputs() -> dict[str, Any]:
    """The constraint widgets; returns their values under DesignConstraints' key names (checked later)."""
    presets = element_presets()
    with st.expander("Allowed elements", expanded=True):
        allowed = element_picker(
            design.ALLOWED, presets=presets, descriptions=PRESET_DESCRIPTIONS, default=presets["all"]
        )
    left, middle, right = st.columns(3)
    with left:
        max_elements = kept_setting(st.number_input, "Max elements per recipe (0 = no cap)", "design_max_elements",
                                    "constraints.max_elements", none_as=0, min_value=0,
                                    max_value=len(element_symbols()), step=1)  # fmt: skip
        min_weight = kept_setting(st.number_input, "Min fraction of a present element", "design_min_weight",
                                  "constraints.min_nonzero_weight", min_value=0.0, max_value=0.99, step=0.01,
                                  format="%.3f")  # fmt: skip
        max_distance = kept_setting(st.number_input, "Max distance to the training data (0 = no limit)",
                                    "design_max_distance", "constraints.max_distance", none_as=0.0, min_value=0.0,
                                    max_value=1.0, step=0.05, format="%.3f")  # fmt: skip
    with middle:
        diversity = kept_setting(st.slider, "Diversity scale (low: few elements)", "design_diversity",
                                 "constraints.diversity_scale", min_value=0.0, max_value=1.0, step=0.05)  # fmt: skip
        seed_blend = kept_setting(st.slider, "Seed blend (1: stay within each seed's elements)",
                                  "design_seed_blend", "constraints.seed_blend", min_value=0.0, max_value=1.0,
                                  step=0.05)  # fmt: skip
        annealing = kept_setting(st.slider, "Annealing scale (top-K start temperature 25^s)", "design_annealing",
                                 "constraints.annealing_scale", min_value=0.0, max_value=1.0, step=0.05)  # fmt: skip
    with right:
        st.caption("Fixed amounts (atomic fraction, exact in every recipe)")
        st.text_input("Fixed amounts as text", key=design.FIXED_TEXT, placeholder="Al=0.1, Ti=0.05",
                      on_change=design.fixed_from_text,
                      help="Replaces the table below; leave empty to edit the table directly.")  # fmt: skip
        if st.session_state.get(design.FIXED_TEXT_ERROR):
            st.error(st.session_state[design.FIXED_TEXT_ERROR])
        fixed = design.element_table("fixed", step=0.01)
    with st.expander("Per-element step scale (optional: 0 locks an element at its seed amount, <1 slows it)"):
        st.caption(design.setting("constraints.element_step_scale")[1])
        step_scale = design.element_table("step_scale", step=0.05)
    return {
        "allowed_elements": allowed, "max_elements": int(max_elements), "min_nonzero_weight": float(min_weight),
        "diversity_scale": float(diversity), "seed_blend": float(seed_blend), "annealing_scale": float(annealing),
        "fixed_amounts": fixed, "element_step_scale": step_scale, "max_distance": float(max_distance),
    }  # fmt: skip


def seed_and_run_inputs(model: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The seed and optimisation widgets; returns (SeedConfig values, DesignConfig values) by their key names."""
    left, middle, right = st.columns(3)
    with left:
        source = kept_setting(st.radio, "Seeds", "design_seed_source", "seeds.source",
                              options=design.choices("seeds.source"), horizontal=True)  # fmt: skip
        n = kept_setting(st.number_input, "Number of seeds / starts", "design_seed_n", "seeds.n", min_value=1,
                         max_value=512, step=1)  # fmt: skip
        seeds = {"source": source, "n": int(n)}
        if source == "data":
            seeds["strategy"] = kept_setting(st.selectbox, "Pick from the data", "design_seed_strategy",
                                             "seeds.strategy", options=design.choices("seeds.strategy"))  # fmt: skip
            seeds["split"] = kept_setting(st.selectbox, "Split", "design_seed_split", "seeds.split",
                                          options=design.choices("seeds.split"))  # fmt: skip
        elif source == "formulas":
            seeds["formulas"] = kept(st.text_area, "Seed formulas (one per line)", "design_seed_formulas", "",
                                     placeholder="Fe0.7Ni0.2Cr0.1\nTiZrNbHf")  # fmt: skip
    with middle:
        settings = {"method": kept_setting(st.radio, "Method", "design_method", "method", options=design.methods(model),
                                           horizontal=True)}  # fmt: skip
        if settings["method"] == "latent":
            settings["ae_align_scale"] = float(kept_setting(
                st.number_input, "Autoencoder alignment scale", "design_ae_align", "ae_align_scale", min_value=0.0,
                max_value=1.0, step=0.1,
            ))  # fmt: skip
    with right:
        settings["steps"] = int(kept_setting(st.number_input, "Steps", "design_steps", "steps", min_value=2,
                                             max_value=20000, step=50))  # fmt: skip
        settings["lr"] = float(kept_setting(st.number_input, "Learning rate", "design_lr", "lr", min_value=1e-4,
                                            step=0.05, format="%.4g"))  # fmt: skip
        settings["random_seed"] = int(kept_setting(st.number_input, "Random seed", "design_random_seed",
                                                   "random_seed", min_value=0, step=1))  # fmt: skip
        settings["uncertainty_scale"] = float(kept_setting(
            st.number_input, "Uncertainty scale (ensembles: x std)", "design_uncertainty_scale", "uncertainty_scale",
            min_value=0.0, step=0.5,
        ))  # fmt: skip
        settings["restarts"] = int(kept_setting(
            st.number_input, "Restart rounds (for distinct recipes)", "design_restarts", "restarts", min_value=0,
            max_value=MAX_RESTARTS, step=1,
        ))  # fmt: skip
    return seeds, settings


# ---------------------------------------------------------------------- results
HOW_TO_READ = {  # one line under the results table and under each figure tab, in a scientist's words
    "table": "How to read this: one row per recipe, best first by objective (lower is better: the weighted sum of "
    "the target terms in units of the training spread, e.g. a value target's squared miss, minus the value for "
    "'high'). Values are the model's predictions for "
    "the recipe exactly as written (x_<element>: atomic fractions summing to 1). distance_to_training is the share "
    "of atoms that differ from the nearest training composition (0 = a known composition); extrapolated_for names "
    "the targets whose test errors do not cover this recipe. charge_balance (advisory) says whether common "
    "oxidation states can make an oxide, nitride or halide neutral; metals are 'not applicable'.",
    "Element frequency": "How to read this: the number in a coloured cell is how many distinct recipes "
    "(near-duplicates counted once) contain the element; light cells with 0 were allowed but no recipe uses them; "
    "grey struck-through cells were not allowed. A red frame marks an element no seed contained.",
    "Seed → designed": "How to read this: each point is a recipe; across, the property of the seed it started "
    "from, up, the designed recipe's (same unit). The vertical distance to the dotted 1:1 line is what the design "
    "changed; points on the dashed red line hit the target. Bars (ensembles): ± 1 standard deviation of the members.",
    "Pareto": "How to read this: each point is a recipe placed by two of its target properties; the red line joins "
    "the recipes no other recipe beats on both (the Pareto front). Moving along it trades one property for the "
    "other; points behind it are beaten on both.",
    "Trajectory": "How to read this: the objective and each of its terms against the optimisation step (lower is "
    "better): the line is the mean over the starts, the band runs from the best to the worst start. A flat end "
    "means the descent has settled.",
}


def show_results(result: DesignResult, checkpoint: Any) -> None:
    table = result.table
    counts = design.result_counts(result)
    st.header("Results")
    a, b, c, d = st.columns(4)
    a.metric("Recipes", counts["recipes"])
    b.metric("Distinct recipes", f"{counts['distinct']} of {counts['asked']} asked")
    c.metric("Satisfy every hard constraint", f"{counts['ok']}/{counts['recipes']}")
    d.metric("Run time", f"{result.seconds:.1f} s")
    if checkpoint is not None:
        st.caption("Targets: " + "; ".join(f"{t.describe(checkpoint.model)} (weight {t.weight:g})"
                                          for t in result.config.targets))  # fmt: skip
    if result.shortfall:
        st.warning(result.shortfall)
    if counts["ok"] < counts["recipes"]:
        st.warning(f"{counts['recipes'] - counts['ok']} recipe(s) violate a hard constraint: see the "
                   "constraint_check column.")  # fmt: skip
    if counts["far"]:
        st.warning(
            f"{counts['far']} recipe(s) lie as far from a target task's training compositions as its furthest test "
            "composition, or further (column extrapolated_for): the model card's test errors do not cover their values."
        )
    if impossible := batch_impossible_warning(table):
        st.warning(impossible)

    st.dataframe(table, hide_index=True, column_config=design.result_columns(result), key="design_results_table")
    if note := design.stability_note(result, checkpoint):
        st.caption(note)
    st.caption(HOW_TO_READ["table"])

    view = design.result_view(result, checkpoint)
    left, right, _ = st.columns([1, 1, 4])
    left.download_button("Download CSV", view["csv"], file_name="recipes.csv", mime="text/csv",
                         key="download_csv", on_click="ignore", width="stretch")  # fmt: skip
    right.download_button("Download JSON", view["json"], file_name="results.json", mime="application/json",
                          key="download_json", on_click="ignore", width="stretch")  # fmt: skip

    tabs = design.figure_tabs(view["figures"])
    if not tabs:
        st.info("Figures need the checkpoint these results were made with, which could not be loaded.")
        return
    for tab, (name, figures) in zip(st.tabs(list(tabs)), tabs.items(), strict=True):
        with tab:
            if name in HOW_TO_READ:
                st.caption(HOW_TO_READ[name])
            if "element_heatmap" in figures and result.seeds is not None:
                new = design.new_elements(result)
                st.caption("Elements framed in red are absent from every seed: " + (", ".join(new) or "none"))
            columns = st.columns(min(2, len(figures)))
            for i, (stem, figure) in enumerate(figures.items()):
                with columns[i % len(columns)]:
                    st.plotly_chart(figure, key=f"design_fig_{stem}")


# ---------------------------------------------------------------------- the page
def main() -> None:
    st.title("Inverse design")
    st.caption("Compositions from the elements you allow that hit your property targets (gradient-based).")
    active = active_checkpoint_or_explain()
    if active is None:
        return
    checkpoint = active[1]
    model = checkpoint.model

    design_settings.restore_controls(model)
    st.subheader("Targets")
    st.caption("Values are in each task's physical unit; terms are compared in units of the training spread.")
    targets = target_inputs(checkpoint, foundation=is_foundation(checkpoint.path))
    st.subheader("Constraints")
    constraints = constraint_inputs()
    st.subheader("Seeds and optimisation")
    seeds, settings = seed_and_run_inputs(model)

    button_col, message_col = st.columns([1, 5], vertical_alignment="center")
    if button_col.button("Run design", key="run_design", type="primary", width="stretch"):
        st.session_state[design.RUN_ERROR] = ""
        try:
            config = design.design_config(targets, constraints, seeds, settings)
        except ValueError as error:
            st.session_state[design.RUN_ERROR] = str(error)
        else:
            with message_col:
                design.start_run(checkpoint, config)
    result = state.get(state.DESIGN_RESULT)
    if st.session_state.get(design.RUN_ERROR):
        earlier = " Nothing was run: the results below are from the previous design." if result is not None else ""
        message_col.error(f"Cannot run this design: {st.session_state[design.RUN_ERROR]}{earlier}")
    if result is None:
        return
    made_with, warning = design.result_checkpoint(result, checkpoint)
    if warning:
        st.warning(warning)
    show_results(result, made_with)


main()
