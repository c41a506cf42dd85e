import numpy as np

from fm_engine.elements import element_symbols, element_table, element_table_hash, feature_matrix


def test_table_covers_h_to_pu_with_58_complete_features():
    table = element_table()
    assert table.shape == (94, 58)
    assert element_symbols()[0] == "H" and element_symbols()[-1] == "Pu"
    assert list(table["atomic_number"]) == list(range(1, 95))
    assert np.isfinite(feature_matrix()).all()


def test_hash_is_stable_sha256():
    assert len(element_table_hash()) == 64
    assert element_table_hash() == element_table_hash()
