"""Synthetic corpora in the contract format (fm_engine.foundation.corpus), for tests and bench/pretrain_epoch.py:
DFT-like compositions (2-5 elements, small integer amounts), labels that are smooth functions of the element
table plus noise, each task labelled on its own share of the rows (the rest NaN: masked)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fm_engine.compositions import key_from_fractions
from fm_engine.elements import element_symbols, feature_matrix
from fm_engine.foundation.corpus import Corpus, CorpusTask, TaskSource, load_corpus, write_corpus

# (name, type, unit, share of rows labelled)
DEFAULT_TASKS = (
    ("formation_energy", "regression", "eV/atom", 0.9),
    ("band_gap", "regression", "eV", 0.5),
    ("bulk_modulus", "regression", "GPa", 0.1),
    ("is_metal", "classification", "", 0.4),
)


def synthetic_compositions(n: int, *, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """``n`` distinct canonical keys and their (n, 94) atomic fractions."""
    rng = np.random.default_rng(seed)
    symbols = element_symbols()
    usable = min(len(symbols), 83)  # H..Bi
    keys: dict[str, np.ndarray] = {}
    while len(keys) < n:
        m = max(1024, int((n - len(keys)) * 1.2))
        sizes = rng.choice([2, 3, 4, 5], size=m, p=[0.35, 0.4, 0.2, 0.05])
        for size in sizes:
            elements = rng.choice(usable, size=size, replace=False)
            amounts = rng.integers(1, 9, size=size).astype(np.float64)
            fractions = amounts / amounts.sum()
            key = key_from_fractions({symbols[e]: f for e, f in zip(elements, fractions, strict=True)})
            if key not in keys:
                weights = np.zeros(len(symbols))
                weights[elements] = fractions
                keys[key] = weights
                if len(keys) == n:
                    break
    return list(keys), np.stack(list(keys.values()))


def synthetic_frame(
    n: int, *, seed: int = 0, tasks: tuple[tuple[str, str, str, float], ...] = DEFAULT_TASKS
) -> tuple[pd.DataFrame, list[CorpusTask]]:
    keys, weights = synthetic_compositions(n, seed=seed)
    rng = np.random.default_rng(seed + 1)
    features = np.nan_to_num(feature_matrix(), nan=0.0)
    features = (features - features.mean(axis=0)) / (features.std(axis=0) + 1e-9)
    frame = pd.DataFrame({"composition": keys, "formula": keys,
                          "split": rng.choice(["train", "val", "test"], size=n, p=[0.8, 0.1, 0.1])})  # fmt: skip
    corpus_tasks = []
    for index, (name, kind, unit, share) in enumerate(tasks):
        direction = np.random.default_rng(seed + 100 + index).normal(size=features.shape[1])
        signal = weights @ features @ direction / np.sqrt(features.shape[1])
        if kind == "classification":
            values = (signal > np.median(signal)).astype(np.float64)
        else:
            values = 2.0 * signal + 0.1 * rng.normal(size=n)
        values[rng.random(n) > share] = np.nan
        frame[name] = values
        classes = ["no", "yes"] if kind == "classification" else None
        source = TaskSource(dataset="synthetic", file="tests/foundation/synthetic.py", license="CC0")
        corpus_tasks.append(CorpusTask(name=name, type=kind, unit=unit, description=f"synthetic {name}",
                                       source=source, classes=classes))  # fmt: skip
    return frame, corpus_tasks


def write_synthetic_corpus(path: Path, n: int, *, seed: int = 0, **options) -> Corpus:
    """A synthetic corpus of ``n`` compositions written at ``path`` (see :func:`synthetic_frame`)."""
    frame, tasks = synthetic_frame(n, seed=seed, **options)
    folder = write_corpus(path, frame, tasks, manifest={"builder": "tests.foundation.synthetic", "seed": seed},
                          rules=["synthetic labels: smooth functions of the element table plus noise"])  # fmt: skip
    return load_corpus(folder)
