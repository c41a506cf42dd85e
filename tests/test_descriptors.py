import json
import math

import numpy as np
import pytest
import torch

from fm_engine.compositions import to_weights
from fm_engine.descriptors import Descriptor, DescriptorCache, DescriptorSpec, transform_in_blocks
from fm_engine.elements import element_index, element_table

SPECS = [
    DescriptorSpec(kind="kmd"),
    DescriptorSpec(kind="kmd", n_grids=5, sigma=0.1),
    DescriptorSpec(kind="stats"),
]


def random_weights(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = np.zeros((n, 94))
    for row in w:
        chosen = rng.choice(94, size=rng.integers(1, 6), replace=False)
        row[chosen] = rng.dirichlet(np.ones(len(chosen)))
    return w


def test_default_kmd_has_464_dims():
    descriptor = Descriptor()
    assert descriptor.dim == 58 * 8 == 464
    assert descriptor.kernel.shape == (94, 464)
    assert len(descriptor.feature_names) == 464


def test_kmd_kernel_matches_definition():
    descriptor = Descriptor(DescriptorSpec(kind="kmd", n_grids=8))
    table = element_table()
    feature = table["melting_point"].to_numpy()
    scaled = (feature - feature.min()) / (feature.max() - feature.min())
    f = list(table.columns).index("melting_point")
    spacing = 1 / 7
    sigma = spacing / math.sqrt(2)
    fe = element_index()["Fe"]
    for j in range(8):
        expected = math.exp(-((scaled[fe] - j * spacing) ** 2) / (2 * sigma**2))
        assert descriptor.kernel[fe, f * 8 + j] == pytest.approx(expected)
    # A pure element's descriptor is its kernel row.
    assert np.allclose(descriptor.transform(to_weights("Fe")), descriptor.kernel[fe])


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.kind}-{s.n_grids}")
def test_numpy_and_torch_paths_agree(spec):
    descriptor = Descriptor(spec)
    w = random_weights(32)
    expected = descriptor.transform(w)
    got = descriptor.transform_torch(torch.tensor(w, dtype=torch.float64)).numpy()
    assert got.shape == (32, descriptor.dim)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.kind}-{s.n_grids}")
def test_gradients_match_finite_differences(spec):
    descriptor = Descriptor(spec)
    w = torch.tensor(random_weights(3, seed=1) + 0.01, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: descriptor.transform_torch(v)[:, ::7], (w,), eps=1e-6, atol=1e-5)


def test_stats_descriptor_mean_var_and_smooth_extremes():
    descriptor = Descriptor(DescriptorSpec(kind="stats", smooth_beta=200.0))
    x = descriptor.transform(to_weights("Fe0.5Ni0.5"))
    f = descriptor._features  # min-max scaled features
    fe, ni = element_index()["Fe"], element_index()["Ni"]
    x = x.reshape(descriptor.n_tokens, 4)  # feature-major: mean, var, max, min per feature
    np.testing.assert_allclose(x[:, 0], 0.5 * (f[fe] + f[ni]))
    np.testing.assert_allclose(x[:, 1], 0.25 * (f[fe] - f[ni]) ** 2, atol=1e-12)
    # Smooth max/min approach the max/min over the elements present (absent elements never count).
    np.testing.assert_allclose(x[:, 2], np.maximum(f[fe], f[ni]), atol=0.02)
    np.testing.assert_allclose(x[:, 3], np.minimum(f[fe], f[ni]), atol=0.02)
    assert descriptor.feature_names[:2] == ["mean_atomic_number", "var_atomic_number"]


def test_spec_json_round_trip_rebuilds_identical_descriptor():
    spec = DescriptorSpec(kind="kmd", n_grids=6, sigma=0.2)
    text = spec.to_json()
    assert json.loads(text)["element_table_hash"] == spec.element_table_hash
    rebuilt = Descriptor(DescriptorSpec.from_json(text))
    w = random_weights(4)
    np.testing.assert_array_equal(rebuilt.transform(w), Descriptor(spec).transform(w))


def test_spec_rejects_foreign_table_and_bad_settings():
    with pytest.raises(ValueError, match="different element table"):
        Descriptor(DescriptorSpec(element_table_hash="0" * 64))
    with pytest.raises(ValueError, match="unknown key 'descriptor.grids'"):
        DescriptorSpec.from_dict({"kind": "kmd", "grids": 3})
    with pytest.raises(ValueError, match="unknown descriptor kind"):
        DescriptorSpec(kind="magpie")
    with pytest.raises(ValueError, match="n_grids"):
        DescriptorSpec(n_grids=1)


def test_from_compositions_names_bad_row():
    descriptor = Descriptor()
    assert descriptor.from_compositions(["Fe2O3", "NaCl"]).shape == (2, 464)
    with pytest.raises(ValueError, match="row 1: 'Qq': unknown element"):
        descriptor.from_compositions(["Fe2O3", "Qq"])


def test_cache_computes_each_composition_once():
    descriptor = Descriptor()
    calls = []
    original = descriptor.transform
    descriptor.transform = lambda w: calls.append(len(w)) or original(w)
    cache = DescriptorCache(descriptor)
    w = random_weights(3)
    first = cache.get(["a", "b", "c"], w)
    second = cache.get(["c", "a", "d"], np.vstack([w[2], w[0], w[1]]))
    assert calls == [3, 1]
    np.testing.assert_array_equal(second[0], first[2])
    assert len(cache) == 4


def test_transform_in_blocks_fills_a_given_array_block_by_block() -> None:
    descriptor = Descriptor()
    weights = np.stack([to_weights(f) for f in ("Fe2O3", "NaCl", "Cu", "Al0.65Cu0.2Fe0.15", "MgO")])
    out = np.full((5, descriptor.dim), np.nan, dtype=np.float32)
    seen: list[int] = []
    x, finite = transform_in_blocks(descriptor, weights, out=out, block=2, progress=seen.append)
    assert x is out and seen == [2, 2, 1] and finite.all()
    np.testing.assert_allclose(out, descriptor.transform(weights), rtol=1e-6)
    with pytest.raises(ValueError, match="expected"):
        transform_in_blocks(descriptor, weights, out=out[:4])
