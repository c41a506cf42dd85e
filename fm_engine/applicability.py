"""How far a composition is from the compositions a model was trained on (its applicability domain).

The distance between two compositions is ``0.5 * sum |w_a - w_b|`` over atomic fractions: the fraction
of atoms that differ (0 = identical, 1 = no element in common). A task's *training domain* is the set of
training-split compositions labelled for that task; its ``tested_up_to`` is the largest distance of a
test composition from it, i.e. how far from the training data the task's test metrics were measured.
A prediction as far away as that or further is an extrapolation the model card's errors do not cover: at the
furthest test composition's distance the test error rests on that one composition (and at 1, no element in
common, on none the model could relate), so the boundary itself counts as beyond (:func:`is_beyond_tested`).

A checkpoint without ``compositions.csv`` (copied without it, or written by hand) has no recorded
training data: predictions and designs still come out, without distance columns, and one warning says why.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from fm_engine.checkpoints import (
    COMPOSITIONS_FILE,
    TASKS_SEPARATOR,
    LoadedCheckpoint,
    compositions_file,
    read_compositions,
)
from fm_engine.compositions import weights_from_keys
from fm_engine.elements import n_elements


@dataclass(frozen=True)
class TrainingDomain:
    """Training compositions of one task (or of every task) and how far out its test set reached."""

    keys: tuple[str, ...]
    weights: np.ndarray  # (N, 94) atomic fractions
    tested_up_to: float  # largest test-composition distance; NaN without test compositions
    task: str | None  # None: every task's compositions (also for checkpoints without the per-task record)
    index: ReferenceIndex | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class TrainingSet:
    """A checkpoint's training compositions (``compositions.csv``) read once: the training split's keys and
    atomic fractions, which tasks each is labelled for (``members`` (N, T) over ``tasks``; one all-True
    column named None for a record without the per-task ``tasks`` column), one element-pair index over
    all of them and each task's ``tested_up_to``."""

    tasks: tuple[str | None, ...]
    keys: np.ndarray  # (N,) object
    weights: np.ndarray  # (N, 94)
    members: np.ndarray  # (N, T) bool
    index: ReferenceIndex
    tested_up_to: dict[str | None, float]
    test_weights: np.ndarray  # (M, 94) the test split's compositions
    grouped: GroupedIndex | None = None  # ``index`` with ``members``: every task's distances in one search

    def column(self, task: str | None) -> int | None:
        return self.tasks.index(task) if task in self.tasks else None


MAX_SPARSE_ELEMENTS = 8
"""Rows with more elements than this are searched densely (every reference, every element)."""


class ReferenceIndex:
    """Reference compositions (rows of atomic fractions summing to 1) indexed for exact nearest-neighbour
    search by element pairs.

    For fractions summing to 1, ``0.5 * sum |q - r| = 1 - overlap(q, r)`` with
    ``overlap = sum_e min(q_e, r_e)`` over the elements the two share. A reference sharing one element
    ``e`` with ``q`` overlaps at most ``min(q_e, max_r r_e)``, and the reference with the largest ``r_e``
    overlaps at least that much, so that per-element bound is exact for them; only references sharing
    two or more elements (found through an element-pair index) are compared one by one. For a few-element
    query that is a few hundred references of thousands, with the same result as a full search.
    """

    def __init__(self, reference: np.ndarray) -> None:
        self.reference = np.atleast_2d(np.asarray(reference))  # as given (float32 stays float32 until needed)
        n_refs, n_el = self.reference.shape
        self.n_elements = n_el
        rows, cols = np.nonzero(self.reference > 0)  # row-major: each row's elements ascending
        values = self.reference[rows, cols].astype(np.float64)
        self.counts = np.bincount(rows, minlength=n_refs)  # elements per row
        totals = np.bincount(rows, weights=values, minlength=n_refs)
        self.normalised = bool(n_refs) and bool(np.all(np.abs(totals - 1.0) < 1e-6))
        # each element's largest fraction and the first reference holding it (0 and 0 for an absent element)
        by_element = np.argsort(cols, kind="stable")  # element-major, references ascending
        element_of, value_of = cols[by_element], values[by_element]
        starts = np.flatnonzero(np.r_[True, element_of[1:] != element_of[:-1]]) if len(rows) else rows
        self.best_value, self.best_ref = np.zeros(n_el), np.zeros(n_el, dtype=np.int64)
        if len(rows):
            largest = np.maximum.reduceat(value_of, starts)
            at_largest = value_of >= np.repeat(largest, np.diff(np.r_[starts, len(rows)]))
            first = np.flatnonzero(at_largest)[np.unique(element_of[at_largest], return_index=True)[1]]
            self.best_value[element_of[starts]] = largest
            self.best_ref[element_of[first]] = rows[by_element[first]]
        slot = np.arange(len(rows)) - np.searchsorted(rows, rows)  # position of the element in its row
        width = int(slot.max()) + 1 if len(rows) else 1
        self.elements = np.full((n_refs, width), -1, dtype=np.int16)  # each row's elements ascending, -1 padded
        self.elements[rows, slot] = cols
        self.fractions = np.zeros((n_refs, width))  # their fractions, 0 padded
        self.fractions[rows, slot] = values
        # the same, row after row without padding: row i's elements at flat_elements[row_offset[i]:][:counts[i]]
        self.flat_elements, self.flat_fractions = cols.astype(np.int16), values
        self.row_offset = np.searchsorted(rows, np.arange(n_refs))

    @cached_property
    def weights(self) -> np.ndarray:
        """(N, E) float64 atomic fractions (made on first use: the full searches need them)."""
        return np.ascontiguousarray(self.reference, dtype=np.float64)

    @cached_property
    def _pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """The element-pair index (built on first use): references of each pair, and each pair's start."""
        n_el, width = self.n_elements, self.elements.shape[1]
        first, second = np.triu_indices(width, k=1)
        valid = (self.elements[:, first] >= 0) & (self.elements[:, second] >= 0)  # (N, pairs)
        elements = self.elements.astype(np.int64)
        ids = (elements[:, first] * n_el + elements[:, second])[valid]  # row-major: reference order
        refs = np.broadcast_to(np.arange(len(self))[:, None], valid.shape)[valid]
        order = np.argsort(ids, kind="stable")  # by pair, then reference order
        return refs[order], np.searchsorted(ids[order], np.arange(n_el * n_el + 1))

    @property
    def pair_refs(self) -> np.ndarray:
        return self._pairs[0]

    @property
    def pair_start(self) -> np.ndarray:
        return self._pairs[1]

    def __len__(self) -> int:
        return len(self.reference)


def nearest(
    weights: np.ndarray, reference: np.ndarray | ReferenceIndex, *, chunk_size: int = 2048
) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest ``reference`` row for each row of ``weights`` and the distance to it (0..1).

    Exact; rows of at most :data:`MAX_SPARSE_ELEMENTS` elements against references of atomic fractions go
    through the element-pair index (see :class:`ReferenceIndex`), others through a full L1 search. Pass a
    :class:`ReferenceIndex` to reuse the index across calls. Ties: the first reference in order for
    the full search, a nearest one otherwise.
    """
    index = reference if isinstance(reference, ReferenceIndex) else ReferenceIndex(reference)
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    if len(index) == 0 or len(weights) == 0:
        return np.full(len(weights), -1), np.full(len(weights), np.nan)
    best = np.zeros(len(weights), dtype=np.int64)
    distance = np.zeros(len(weights), dtype=np.float64)
    counts = (weights > 0).sum(axis=1)
    sparse = (counts <= MAX_SPARSE_ELEMENTS) & (counts > 0) if index.normalised else np.zeros(len(weights), bool)
    by_size = np.flatnonzero(sparse)[np.argsort(counts[sparse], kind="stable")]  # few padded slots per block
    for rows, search in ((by_size, _nearest_sparse), (np.flatnonzero(~sparse), _nearest_dense)):
        for start in range(0, len(rows), chunk_size):
            block = rows[start : start + chunk_size]
            best[block], distance[block] = search(weights[block], index)
    # rounded to the 6 decimals of the canonical keys, so 0.000999994 reads 0.001
    return best, np.clip(np.round(distance, 6), 0.0, 1.0)


def _nearest_dense(weights: np.ndarray, index: ReferenceIndex) -> tuple[np.ndarray, np.ndarray]:
    """Every reference, every element (L1 distance in float64)."""
    best = torch.cdist(torch.as_tensor(weights), torch.as_tensor(index.weights), p=1).min(dim=1)
    return best.indices.numpy(), 0.5 * best.values.numpy()


def _pair_candidates(
    weights: np.ndarray,
    index: ReferenceIndex,
    rows: np.ndarray,
    cols: np.ndarray,
    row_start: np.ndarray,
    values: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The references sharing two or more elements with each row of ``weights`` (through the element-pair
    index; once per shared pair), as ``(candidates, owner, overlap)``: reference, query row (rows grouped in
    order) and ``sum_e min(q_e, r_e)``. None when no row has such a reference."""
    n, n_el = len(weights), index.n_elements
    position = np.arange(len(rows)) - row_start[rows]
    k = int(position.max()) + 1  # padded per-row elements (k = most elements in a row)
    if k < 2:
        return None
    elements = np.zeros((n, k), dtype=np.int64)
    fractions = np.zeros((n, k), dtype=np.float64)
    elements[rows, position] = cols
    fractions[rows, position] = values
    first_slot, second_slot = np.triu_indices(k, k=1)
    valid = (fractions[:, first_slot] > 0) & (fractions[:, second_slot] > 0)
    pair = elements[:, first_slot] * n_el + elements[:, second_slot]
    query_rows = np.broadcast_to(np.arange(n)[:, None], pair.shape)[valid]  # row-major: grouped by row
    pair = pair[valid]
    starts, stops = index.pair_start[pair], index.pair_start[pair + 1]
    sizes = stops - starts
    total = int(sizes.sum())
    if not total:
        return None
    offsets = np.repeat(starts - (np.cumsum(sizes) - sizes), sizes)
    candidates = index.pair_refs[offsets + np.arange(total)]
    owner = np.repeat(query_rows, sizes)
    overlap = np.zeros(total)
    flat_weights, base = index.weights.ravel(), candidates * n_el
    for slot in range(k):  # one element of the query at a time: 1-d gathers are the fast ones
        # owner is query_rows repeated: repeating per pair streams, where gathering per candidate jumps
        slot_fraction = np.repeat(fractions[query_rows, slot], sizes)
        slot_element = np.repeat(elements[query_rows, slot], sizes)
        overlap += np.minimum(slot_fraction, flat_weights[base + slot_element])
    return candidates, owner, overlap


def _nearest_sparse(weights: np.ndarray, index: ReferenceIndex) -> tuple[np.ndarray, np.ndarray]:
    """Rows of a few elements against normalised references, through the element-pair index."""
    n = len(weights)
    rows, cols = np.nonzero(weights > 0)  # row-major, every row has 1..MAX_SPARSE_ELEMENTS elements
    row_start = np.searchsorted(rows, np.arange(n))
    values = weights[rows, cols]
    # References sharing one element e: overlap at most min(q_e, max r_e), reached by index.best_ref[e].
    single = np.minimum(values, index.best_value[cols])
    best_overlap = np.maximum.reduceat(single, row_start)
    is_row_best = single >= best_overlap[rows]
    first = np.flatnonzero(is_row_best)[np.unique(rows[is_row_best], return_index=True)[1]]
    best_ref = index.best_ref[cols[first]]
    found = _pair_candidates(weights, index, rows, cols, row_start, values)
    if found is not None:
        candidates, owner, overlap = found
        total = len(candidates)
        group_start = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
        group_rows = owner[group_start]
        group_best = np.maximum.reduceat(overlap, group_start)
        better = group_best > best_overlap[group_rows]
        at_best = overlap >= np.repeat(group_best, np.diff(np.r_[group_start, total]))
        winner = np.flatnonzero(at_best)[np.unique(owner[at_best], return_index=True)[1]]
        best_overlap[group_rows[better]] = group_best[better]
        best_ref[group_rows[better]] = candidates[winner[better]]
    return best_ref, 0.5 * (weights.sum(axis=1) + 1.0) - best_overlap


PATTERNS_PER_GROUP = 16
"""Up to this many membership patterns per group, candidates are reduced per pattern (one pass), else per group."""

SUBSET_ELEMENTS = MAX_SPARSE_ELEMENTS
"""References of at most this many elements are indexed by every subset of two or more of their elements
(:class:`GroupedIndex`; up to 247 subsets each); wider ones (rare) are compared with every query."""


def distinct_rows(flags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of a (N, G) bool array (P, G) and each row's index among them (N,), like
    ``np.unique(flags, axis=0, return_inverse=True)`` but in no particular order, and for up to 62 columns
    through one integer code per row (a 1-d unique instead of a row sort)."""
    flags = np.asarray(flags, dtype=bool)
    if flags.shape[1] > 62:
        patterns, inverse = np.unique(flags, axis=0, return_inverse=True)
        return patterns, inverse.reshape(-1)
    codes = flags.astype(np.int64) @ (np.int64(1) << np.arange(flags.shape[1], dtype=np.int64))
    unique, inverse = np.unique(codes, return_inverse=True)
    return ((unique[:, None] >> np.arange(flags.shape[1])) & 1).astype(bool), inverse.reshape(-1)


class GroupedIndex:
    """A :class:`ReferenceIndex` whose references belong to groups (e.g. the tasks they are labelled for):
    ``groups`` (N, G) bool. Holds what every search reuses: each group's largest fraction of each element, the
    distinct membership patterns of the references (a few hundred for a corpus of 23 tasks), and the
    references listed under every subset of two or more of their elements, each list split into runs of one
    membership pattern (see :data:`PATTERNS_PER_GROUP` and :func:`nearest_by_group`)."""

    def __init__(self, index: ReferenceIndex, groups: np.ndarray) -> None:
        self.index = index
        groups = np.asarray(groups, dtype=bool).reshape(len(index), -1)
        self.n_groups = groups.shape[1]
        self.has_members = groups.any(axis=0)
        patterns, self.pattern_of_ref = distinct_rows(groups)
        self.patterns = np.ascontiguousarray(patterns.T)  # (G, P): which patterns hold each group
        self.by_pattern = self.patterns.shape[1] <= PATTERNS_PER_GROUP * self.n_groups
        self.members = np.ascontiguousarray(groups.T)  # (G, N)
        self.best_values = _group_best_values(index, self.members)
        self._index_subsets()

    def _index_subsets(self) -> None:
        """``subset_keys`` (sorted): every subset of 2..SUBSET_ELEMENTS elements some reference holds (see
        :func:`_subset_keys`); ``key_runs``: each key's runs (one per membership pattern if ``by_pattern``, else
        one); ``run_groups`` (R, G) and ``run_refs``: each run's groups and its references in ``subset_refs``, by
        their mass on the subset, largest first; ``subset_rank``: run * 2**32 + the rank of that mass
        (:func:`_mass_rank`); ``wide``: the references of more elements."""
        elements, counts = self.index.elements.astype(np.int64), self.index.counts
        keys, refs, masses = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)], [np.zeros(0)]
        for m in range(2, min(elements.shape[1], SUBSET_ELEMENTS) + 1):
            rows = np.flatnonzero(counts == m)
            for size in range(2, m + 1) if len(rows) else ():
                combos = _combinations(m, size)
                keys.append(_subset_keys(elements[rows][:, combos]).ravel())
                masses.append(_ordered_sum(self.index.fractions[rows][:, combos]).ravel())
                refs.append(np.repeat(rows, len(combos)))
        key, ref, mass = np.concatenate(keys), np.concatenate(refs), np.concatenate(masses)
        pattern = self.pattern_of_ref[ref] if self.by_pattern else np.zeros(len(ref), dtype=np.int64)
        rank = _mass_rank(mass)
        order = np.argsort((pattern << 32) | rank, kind="stable")  # by subset, pattern, mass (largest first)
        order = order[np.argsort(key[order], kind="stable")]
        key, pattern, rank, self.subset_refs = key[order], pattern[order], rank[order], ref[order]
        changes = (key[1:] != key[:-1]) | (pattern[1:] != pattern[:-1])
        run_start = np.flatnonzero(np.r_[True, changes]) if len(key) else ref
        key_start = np.flatnonzero(np.r_[True, key[run_start][1:] != key[run_start][:-1]]) if len(key) else ref
        self.subset_keys = key[run_start][key_start]
        self.key_runs = np.r_[key_start, len(run_start)]
        self.run_refs = np.r_[run_start, len(key)]
        if not len(key):
            self.run_groups = np.zeros((0, self.n_groups), dtype=bool)
        elif self.by_pattern:
            self.run_groups = np.ascontiguousarray(self.patterns[:, pattern[run_start]].T)
        else:
            self.run_groups = np.logical_or.reduceat(self.members.T[self.subset_refs], run_start, axis=0)
        self.subset_rank = np.repeat(np.arange(len(run_start), dtype=np.int64), np.diff(self.run_refs)) << 32 | rank
        self.wide = np.flatnonzero(counts > SUBSET_ELEMENTS)

    def __len__(self) -> int:
        return len(self.index)


@lru_cache(maxsize=64)
def _combinations(k: int, size: int) -> np.ndarray:
    """(C, size) every choice of ``size`` of ``k`` slots, each ascending."""
    return np.array(list(itertools.combinations(range(k), size)), dtype=np.int64).reshape(-1, size)


def _ordered_sum(fractions: np.ndarray) -> np.ndarray:
    """Sum over the last axis in order (as the overlaps are summed), so ``min``-terms sum to no more."""
    total = fractions[..., 0]
    for slot in range(1, fractions.shape[-1]):
        total = total + fractions[..., slot]
    return total


def _mass_rank(mass: np.ndarray) -> np.ndarray:
    """``floor((1 - mass) * 2**31)`` (int64, 0..2**31): smaller for larger masses."""
    return np.floor((1.0 - np.clip(mass, 0.0, 1.0)) * 2.0**31).astype(np.int64)


def _subset_keys(elements: np.ndarray) -> np.ndarray:
    """One int64 per set of ascending element indices (last axis; at most :data:`SUBSET_ELEMENTS` of < 127)."""
    key = np.zeros(elements.shape[:-1], dtype=np.int64)
    for slot in range(elements.shape[-1]):
        key = key * 128 + elements[..., slot] + 1
    return key


def _expand(starts: np.ndarray, stops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every position of the ranges ``starts[i]:stops[i]`` in order, and the range (i) of each."""
    sizes = stops - starts
    total = int(sizes.sum())
    return np.repeat(starts - (np.cumsum(sizes) - sizes), sizes) + np.arange(total), np.repeat(
        np.arange(len(sizes)), sizes
    )


def nearest_by_group(weights: np.ndarray, grouped: GroupedIndex, *, chunk_size: int = 1024) -> np.ndarray:
    """(n, G) distance of each row of ``weights`` to the nearest reference of each group of ``grouped``; NaN
    for a group without references. The same distances as :func:`nearest` against each group's references.

    One search serves every group (each compared reference counts for the groups of its membership pattern),
    and it compares only references that can beat the best overlap found so far: references sharing one
    element are bounded as in :class:`ReferenceIndex`; a reference sharing the elements ``S`` of the query
    (two or more) overlaps at most ``q(S) = sum_{e in S} q_e`` and at most its own mass on ``S``. The query's
    subsets ``S`` are visited from the largest (its own chemical system) down; a run of references listed
    under ``S`` is compared only if ``q(S)`` exceeds the best overlap so far of one of the run's groups, and
    only its references whose own mass on ``S`` does (both sums in the order the overlaps are summed, so the
    float bounds hold too: the distances are exactly those of a full search).
    """
    index = grouped.index
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    distance = np.zeros((len(weights), grouped.n_groups))
    if len(weights) == 0 or grouped.n_groups == 0:
        return distance
    counts = (weights > 0).sum(axis=1)
    sparse = (counts <= MAX_SPARSE_ELEMENTS) & (counts > 0) if index.normalised else np.zeros(len(weights), bool)
    by_size = np.flatnonzero(sparse)[np.argsort(counts[sparse], kind="stable")]
    for start in range(0, len(by_size), chunk_size):
        block = by_size[start : start + chunk_size]
        distance[block] = _nearest_sparse_by_group(weights[block], grouped).T
    dense = np.flatnonzero(~sparse)
    for g, member in enumerate(grouped.members):
        if len(dense) and member.any():
            reference = torch.as_tensor(index.weights[member])
            for start in range(0, len(dense), chunk_size):
                block = dense[start : start + chunk_size]
                found = torch.cdist(torch.as_tensor(weights[block]), reference, p=1).min(dim=1).values.numpy()
                distance[block, g] = 0.5 * found
    distance = np.clip(np.round(distance, 6), 0.0, 1.0)
    distance[:, ~grouped.has_members] = np.nan
    return distance


def _group_best_values(index: ReferenceIndex, members: np.ndarray) -> np.ndarray:
    """(G, E): per group, the largest fraction of each element among its references."""
    order = np.argsort(index.flat_elements, kind="stable")  # element-major: each element's references together
    elements, values = index.flat_elements[order], index.flat_fractions[order]
    owner = np.repeat(np.arange(len(index)), index.counts)[order]
    best = np.zeros((len(members), index.n_elements))
    if len(order):
        starts = np.flatnonzero(np.r_[True, elements[1:] != elements[:-1]])
        for g, member in enumerate(members):
            best[g, elements[starts]] = np.maximum.reduceat(np.where(member[owner], values, 0.0), starts)
    return best


def _nearest_sparse_by_group(weights: np.ndarray, grouped: GroupedIndex) -> np.ndarray:
    """(G, n) distances of rows of a few elements to each group's nearest reference (see
    :func:`nearest_by_group`)."""
    n = len(weights)
    rows, cols = np.nonzero(weights > 0)
    row_start = np.searchsorted(rows, np.arange(n))
    values = weights[rows, cols]
    # References of group g sharing one element e: overlap at most min(q_e, max r_e over the group).
    best_overlap = np.maximum.reduceat(np.minimum(values[None, :], grouped.best_values[:, cols]), row_start, axis=1)
    counts = np.diff(np.r_[row_start, len(rows)])
    width = int(counts.max())
    elements = np.zeros((n, width), dtype=np.int64)
    fractions = np.zeros((n, width))
    position = np.arange(len(rows)) - row_start[rows]
    elements[rows, position], fractions[rows, position] = cols, values
    if len(grouped.wide):  # each wide reference against every row, one run each
        _raise_best(weights, grouped, np.tile(grouped.wide, n), np.repeat(np.arange(n), len(grouped.wide)),
                    np.arange(n * len(grouped.wide)), best_overlap, by_pattern=False)  # fmt: skip
    for size in range(min(width, SUBSET_ELEMENTS), 1, -1):  # shared sets from the largest down
        keys, mass, owner = [], [], []
        for k in range(size, width + 1):
            queries = np.flatnonzero(counts == k)
            if len(queries):
                combos = _combinations(k, size)
                keys.append(_subset_keys(elements[queries][:, combos]).ravel())
                mass.append(_ordered_sum(fractions[queries][:, combos]).ravel())
                owner.append(np.repeat(queries, len(combos)))
        key, subset_mass, subset_owner = np.concatenate(keys), np.concatenate(mass), np.concatenate(owner)
        found = np.minimum(np.searchsorted(grouped.subset_keys, key), max(len(grouped.subset_keys) - 1, 0))
        held = grouped.subset_keys[found] == key if len(grouped.subset_keys) else np.zeros(len(key), bool)
        run, subset = _expand(grouped.key_runs[found[held]], grouped.key_runs[found[held] + 1])
        run_owner, run_mass = subset_owner[held][subset], subset_mass[held][subset]
        # a run can matter only if q(S) beats the best overlap so far of one of its groups
        threshold = np.full(len(run), np.inf)
        for g in range(grouped.n_groups):
            holds = grouped.run_groups[run, g]
            threshold = np.where(holds, np.minimum(threshold, best_overlap[g, run_owner]), threshold)
        keep = run_mass > threshold
        run, run_owner, threshold = run[keep], run_owner[keep], threshold[keep]
        # and within it only the references whose own mass on S beats it (they come first; margin 2**-30)
        stop = np.searchsorted(grouped.subset_rank, (run << 32) | (_mass_rank(threshold) + 1), side="right")
        scanned = stop > grouped.run_refs[run]
        run, run_owner, stop = run[scanned], run_owner[scanned], stop[scanned]
        refs, _ = _expand(grouped.run_refs[run], stop)
        if len(refs):
            offsets = np.cumsum(stop - grouped.run_refs[run]) - (stop - grouped.run_refs[run])
            _raise_best(weights, grouped, grouped.subset_refs[refs], run_owner, offsets, best_overlap,
                        width=SUBSET_ELEMENTS, by_pattern=grouped.by_pattern)  # fmt: skip
    return 0.5 * (weights.sum(axis=1) + 1.0)[None, :] - best_overlap


def _raise_best(
    weights: np.ndarray,
    grouped: GroupedIndex,
    candidates: np.ndarray,
    run_owner: np.ndarray,
    run_start: np.ndarray,
    best_overlap: np.ndarray,
    *,
    width: int | None = None,
    by_pattern: bool,
) -> None:
    """Raise ``best_overlap`` (G, n) by the overlaps ``sum_e min(q_e, r_e)`` of the references ``candidates``
    (2+ elements each; at most ``width``) with query rows: runs of candidates starting at ``run_start`` (no run
    empty) belong to the rows ``run_owner`` (and, if ``by_pattern``, to one membership pattern each). Summed in
    ascending element order, so the same floats as :func:`_pair_candidates`."""
    index = grouped.index
    counts, start = index.counts[candidates], index.row_offset[candidates]
    owner = np.repeat(run_owner, np.diff(np.r_[run_start, len(candidates)]))
    flat, base = weights.ravel(), owner * weights.shape[1]
    overlap = np.zeros(len(candidates))
    for slot in range(width or index.elements.shape[1]):  # each candidate's elements in ascending order
        if slot < 2:  # every candidate has 2+ elements
            at = start + slot
            overlap += np.minimum(flat[base + index.flat_elements[at]], index.flat_fractions[at])
        else:
            some = np.flatnonzero(counts > slot)
            at = start[some] + slot
            overlap[some] += np.minimum(flat[base[some] + index.flat_elements[at]], index.flat_fractions[at])
    n = weights.shape[0]
    if by_pattern:  # best overlap per (membership pattern, row), then per group over its patterns
        pattern = grouped.pattern_of_ref[candidates[run_start]]
        present = np.flatnonzero(np.bincount(pattern, minlength=grouped.patterns.shape[1]))
        compact = np.zeros(grouped.patterns.shape[1], dtype=np.int64)
        compact[present] = np.arange(len(present))
        table = np.zeros(len(present) * n)
        np.maximum.at(table, compact[pattern] * n + run_owner, np.maximum.reduceat(overlap, run_start))
        table = table.reshape(len(present), n)
        for g, patterns in enumerate(grouped.patterns):
            holds = patterns[present]
            if holds.any():
                best_overlap[g] = np.maximum(best_overlap[g], table[holds].max(axis=0))
    else:  # one masked pass per group
        for g, member in enumerate(grouped.members):
            run_best = np.maximum.reduceat(np.where(member[candidates], overlap, 0.0), run_start)
            np.maximum.at(best_overlap[g], run_owner, run_best)


def has_training_record(checkpoint: LoadedCheckpoint) -> bool:
    """Whether the checkpoint records its training compositions; warns once per checkpoint if not."""
    return _has_record(str(checkpoint.path), checkpoint.checkpoint_id)


@lru_cache(maxsize=32)
def _has_record(checkpoint_dir: str, checkpoint_id: str) -> bool:
    path = compositions_file(Path(checkpoint_dir))
    if path is None:
        problem = f"has no {COMPOSITIONS_FILE} (the training compositions are not recorded)"
    else:
        try:
            columns = set(pd.read_csv(path, nrows=0).columns)
        except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as error:
            columns, problem = set(), f"has an unreadable {COMPOSITIONS_FILE} ({error})"
        else:
            missing = [c for c in ("composition", "split") if c not in columns]
            if not missing:
                return True
            problem = f"has a {COMPOSITIONS_FILE} without the column(s) {', '.join(missing)}"
    warnings.warn(
        f"{checkpoint_dir} {problem}: no distance to the training data and no extrapolation flags are given",
        stacklevel=3,
    )
    return False


def training_domain(checkpoint: LoadedCheckpoint, task: str | None = None) -> TrainingDomain:
    """The training compositions labelled for ``task`` (None: any task). For checkpoints written before
    the per-task record (no ``tasks`` column in compositions.csv) this is every task's (``task`` None);
    without compositions.csv it is empty (no keys, ``tested_up_to`` NaN)."""
    if not has_training_record(checkpoint):
        return TrainingDomain(keys=(), weights=np.zeros((0, n_elements())), tested_up_to=np.nan, task=None)
    return _domain(str(checkpoint.path), checkpoint.checkpoint_id, task)


@lru_cache(maxsize=32)
def _domain(checkpoint_dir: str, checkpoint_id: str, task: str | None) -> TrainingDomain:
    record = _record(checkpoint_dir, checkpoint_id)
    if record.tasks == (None,) or task is None:  # every training composition
        if record.tasks == (None,):
            reach = record.tested_up_to.get(None, np.nan)
        else:  # how far every task's test compositions are from every training composition
            reach = float(nearest(record.test_weights, record.index)[1].max()) if len(record.test_weights) else np.nan
            reach = reach if len(record.keys) else np.nan
        return TrainingDomain(keys=tuple(record.keys), weights=record.weights, tested_up_to=reach, task=None,
                              index=record.index)  # fmt: skip
    column = record.column(task)
    if column is None:  # no composition is labelled for the task
        return TrainingDomain(keys=(), weights=np.zeros((0, n_elements())), tested_up_to=np.nan, task=task)
    member = record.members[:, column]
    return TrainingDomain(keys=tuple(record.keys[member]), weights=record.weights[member],
                          tested_up_to=record.tested_up_to[task], task=task)  # fmt: skip


def training_set(checkpoint: LoadedCheckpoint) -> TrainingSet | None:
    """The checkpoint's :class:`TrainingSet` (read once per checkpoint); None without compositions.csv."""
    if not has_training_record(checkpoint):
        return None
    return _record(str(checkpoint.path), checkpoint.checkpoint_id)


@lru_cache(maxsize=8)
def _record(checkpoint_dir: str, checkpoint_id: str) -> TrainingSet:
    table = read_compositions(Path(checkpoint_dir))
    weights, readable = weights_from_keys(table["composition"].astype(str).tolist())
    split = table["split"].astype(str).to_numpy()
    if "tasks" in table.columns:
        codes, combinations = pd.factorize(table["tasks"].astype(str))
        named = [set(text.split(TASKS_SEPARATOR)) - {""} for text in combinations]
        tasks: tuple[str | None, ...] = tuple(sorted(set().union(*named))) if named else ()
        by_combination = np.array([[name in combo for name in tasks] for combo in named], dtype=bool)
        members = by_combination[codes] if len(codes) else np.zeros((0, len(tasks)), dtype=bool)
    else:
        tasks, members = (None,), np.ones((len(table), 1), dtype=bool)
    train, test = readable & (split == "train"), readable & (split == "test")
    index = ReferenceIndex(weights[train])
    grouped = GroupedIndex(index, members[train])
    tested: dict[str | None, float] = {}
    if tasks:
        reach = nearest_by_group(weights[test], grouped) if test.any() else np.zeros((0, len(tasks)))
        labelled = members[test]
        for column, name in enumerate(tasks):
            found = reach[labelled[:, column], column]
            found = found[np.isfinite(found)]
            tested[name] = float(found.max()) if len(found) else np.nan
    return TrainingSet(tasks=tasks, keys=table["composition"].astype(str).to_numpy(dtype=object)[train],
                          weights=weights[train], members=members[train], index=index, tested_up_to=tested,
                          test_weights=weights[test], grouped=grouped)  # fmt: skip


def distance_column(task: str | None) -> str:
    """``<task>_distance_to_training``; ``distance_to_training`` for every task's compositions."""
    return f"{task}_distance_to_training" if task else "distance_to_training"


BOUNDARY_TOLERANCE = 1e-6
"""Distances are float32: a distance within this of ``tested_up_to`` is at it, one within this of 0 is a training
composition."""


def is_beyond_tested(distance: float | np.ndarray, tested_up_to: float) -> bool | np.ndarray:
    """True where ``distance`` reaches ``tested_up_to`` (equal counts: the furthest test composition is the edge of
    what the test error covers, not inside it) and the composition is not a training one (distance > 0); never
    without test compositions (``tested_up_to`` NaN). Float32 distances: a :data:`BOUNDARY_TOLERANCE`."""
    distance = np.asarray(distance)
    return (distance >= tested_up_to - BOUNDARY_TOLERANCE) & (distance > BOUNDARY_TOLERANCE)


def distance_columns(
    checkpoint: LoadedCheckpoint,
    weights: np.ndarray,
    *,
    rows: np.ndarray,
    n_rows: int,
    tasks: Iterable[str] | None = None,
) -> dict[str, np.ndarray]:
    """Table columns for weight rows placed at ``rows`` of a table of ``n_rows`` (other rows NaN / ""):
    ``<task>_distance_to_training`` for each of ``tasks`` (default: every task; one search per distinct
    training set) and ``extrapolated_for`` (comma-separated tasks for which the row lies as far from the task's
    training compositions as its furthest test composition, or further: :func:`is_beyond_tested`). Checkpoints
    without the per-task record get one ``distance_to_training`` column and no ``extrapolated_for``; checkpoints
    without compositions.csv no columns at all (and one warning)."""
    record = training_set(checkpoint)
    if record is None:
        return {}
    names = list(tasks if tasks is not None else checkpoint.model.tasks)
    columns: dict[str, np.ndarray] = {}
    if record.tasks == (None,):  # no per-task record: one distance to every training composition
        if names:
            columns[distance_column(None)] = np.full(n_rows, np.nan)
            columns[distance_column(None)][rows] = nearest(weights, record.index)[1] if len(record.keys) else np.nan
        return columns
    known = [name for name in names if record.column(name) is not None]
    found = nearest_by_group(weights, record.grouped) if known else np.zeros((len(weights), 0))
    found = found[:, [record.column(name) for name in known]]
    flagged = np.full(n_rows, "", dtype=object)  # comma-separated task names per row
    for task in names:
        distance = found[:, known.index(task)] if task in known else np.full(len(weights), np.nan)
        columns.setdefault(distance_column(task), np.full(n_rows, np.nan))[rows] = distance
        beyond = np.asarray(rows)[is_beyond_tested(distance, record.tested_up_to.get(task, np.nan))]
        flagged[beyond] = np.where(flagged[beyond] == "", task, flagged[beyond] + f", {task}")
    if names:
        columns["extrapolated_for"] = flagged
    return columns


def beyond_tested(checkpoint: LoadedCheckpoint, predictions: pd.DataFrame) -> dict[str, tuple[int, float]]:
    """Per task: (number of rows whose ``extrapolated_for`` names it, the task's ``tested_up_to``), from
    a table with the columns of :func:`distance_columns` (renamed as ``attrs["fm_output_columns"]`` says,
    see :func:`fm_engine.predict.predict_frame`); tasks without such rows are left out."""
    column = predictions.attrs.get("fm_output_columns", {}).get("extrapolated_for", "extrapolated_for")
    if column not in predictions.columns:
        return {}
    names = predictions[column].astype(str).str.split(", ").explode()
    counts = names[names != ""].value_counts()
    return {
        task: (int(counts[task]), training_domain(checkpoint, task).tested_up_to)
        for task in checkpoint.model.tasks
        if task in counts
    }
