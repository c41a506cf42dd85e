"""Issue 14 finding 7 (several users): designs of several sessions run at once on one cached checkpoint.

The workbench keeps one loaded model per checkpoint for every session (``st.cache_resource``) and Streamlit runs
each session's script in its own thread, so a design must never change the shared model, and designs running at
the same moment must each get exactly the result they get alone.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

import numpy as np
import pytest

from fm_engine.checkpoints import LoadedCheckpoint, load_checkpoint
from fm_engine.inverse import DesignConfig, DesignConstraints, SeedConfig, Target, run_design

# (method, diversity, seed blend, annealing, target value in GPa, seed source): distinct settings per session
SESSIONS = [
    ("composition", 1.0, 0.95, 0.5, 240.0, "data"),
    ("composition", 0.0, 0.0, 0.0, 180.0, "data"),
    ("composition", 0.5, 0.5, 1.0, 120.0, "random"),
    ("latent", 1.0, 0.95, 0.5, 200.0, "data"),
]


def config(method: str, diversity: float, blend: float, annealing: float, value: float, source: str) -> DesignConfig:
    return DesignConfig(
        targets=[Target(task="bulk_modulus", value=value)], method=method,  # type: ignore[arg-type]
        constraints=DesignConstraints(
            allowed_elements="alloy_palette", max_elements=4, diversity_scale=diversity, seed_blend=blend,
            annealing_scale=annealing,
        ),
        seeds=SeedConfig(source=source, n=4), steps=30, random_seed=3,  # type: ignore[arg-type]
    )  # fmt: skip


@pytest.fixture(scope="module")
def checkpoint(tiny_run) -> LoadedCheckpoint:
    return load_checkpoint(tiny_run)


def model_state(checkpoint: LoadedCheckpoint) -> dict[str, Any]:
    model = checkpoint.model
    return {
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "training": [m.training for m in model.modules()],
        "grads": [p.grad is not None for p in model.parameters()],
    }


@pytest.mark.parametrize("settings", [SESSIONS[0], SESSIONS[3]], ids=["composition", "latent"])
def test_a_design_never_changes_the_shared_model(checkpoint, settings):
    """Another session's thread uses the same model at any moment: seen from inside a run (at every step) and
    after it, the model's flags are exactly those it had before, and no gradient is left on its weights."""
    before = model_state(checkpoint)
    seen: list[dict[str, Any]] = []
    run_design(checkpoint, config(*settings), progress=lambda done, total: seen.append(model_state(checkpoint)))
    assert seen and len(seen) % 30 == 0  # every step of every round of starts (restarts for distinct recipes)
    changed = [i for i, state in enumerate(seen) if state != before]
    assert not changed, f"the shared model changed at step {changed[0] + 1}: {seen[changed[0]]} != {before}"
    assert model_state(checkpoint) == before


def session(
    checkpoint: LoadedCheckpoint, config: DesignConfig, start: threading.Barrier, results: list, errors: list, i: int
) -> None:
    """One session's design, started with the others (``start``); its result or error is stored at ``i``."""
    try:
        start.wait()
        results[i] = run_design(checkpoint, copy.deepcopy(config))
    except BaseException as error:  # noqa: BLE001 - reported by the test
        errors.append(error)


def test_concurrent_designs_each_get_their_own_result(checkpoint):
    """Four sessions designing at the same moment (threads, as Streamlit runs sessions) on one loaded checkpoint,
    three rounds: every run returns, bit for bit, what the same settings give alone, and its own config."""
    configs = [config(*settings) for settings in SESSIONS]
    alone = [run_design(checkpoint, c) for c in configs]
    for _ in range(3):
        results: list[Any] = [None] * len(configs)
        errors: list[BaseException] = []
        start = threading.Barrier(len(configs))
        threads = [
            threading.Thread(target=session, args=(checkpoint, configs[i], start, results, errors, i))
            for i in range(len(configs))
        ]  # fmt: skip
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, errors
        for i, (result, reference) in enumerate(zip(results, alone, strict=True)):
            assert result.config.to_dict() == configs[i].to_dict()
            np.testing.assert_array_equal(result.recipes, reference.recipes, err_msg=f"session {i}")
            assert result.table["formula"].tolist() == reference.table["formula"].tolist()
