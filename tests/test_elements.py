import hashlib
from pathlib import Path

import numpy as np

import fm_engine
from fm_engine.elements import element_symbols, element_table, element_table_hash, feature_matrix


def test_table_covers_h_to_pu_with_58_complete_features():
    table = element_table()
    assert table.shape == (94, 58)
    assert element_symbols()[0] == "H" and element_symbols()[-1] == "Pu"
    assert list(table["atomic_number"]) == list(range(1, 95))
    assert np.isfinite(feature_matrix()).all()


def test_hash_is_the_sha256_of_the_shipped_table_file():
    shipped = Path(fm_engine.__file__).parent / "element_data" / "element_features.csv"
    assert element_table_hash() == hashlib.sha256(shipped.read_bytes()).hexdigest()
