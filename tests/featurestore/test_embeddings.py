"""Element embeddings loaded from matminer's data files."""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pytest

from matlake.featurestore.embeddings import EMBEDDING_NAMES, UnknownElementError, element_embedding

SHAPES = {"matscholar200": (103, 200), "megnet16": (94, 16), "onehot": (103, 103)}
LAST = {"matscholar200": "Lr", "megnet16": "Pu", "onehot": "Lr"}


def _matminer_json(name: str) -> object:
    return json.loads((resources.files("matminer.utils") / "data_files" / name).read_text())


@pytest.mark.parametrize("name", EMBEDDING_NAMES)
def test_shapes_and_element_order(name: str) -> None:
    emb = element_embedding(name)
    assert emb.name == name
    assert emb.matrix.shape == SHAPES[name] and emb.matrix.dtype == np.float32
    assert emb.dim == SHAPES[name][1]
    assert emb.elements[:3] == ("H", "He", "Li") and emb.elements[-1] == LAST[name]
    assert [emb.index[e] for e in emb.elements] == list(range(len(emb.elements)))
    assert np.isfinite(emb.matrix).all()
    assert not emb.matrix.flags.writeable


@pytest.mark.parametrize("name", EMBEDDING_NAMES)
def test_loaded_once(name: str) -> None:
    assert element_embedding(name) is element_embedding(name)


def test_matscholar_values_match_matminer() -> None:
    raw = _matminer_json("matscholar_els.json")
    emb = element_embedding("matscholar200")
    for el in ("H", "O", "Fe", "Lr"):
        np.testing.assert_array_equal(emb.lookup(el), np.asarray(raw[el], dtype=np.float32))


def test_megnet_rows_are_atomic_numbers_without_dummy() -> None:
    raw = _matminer_json("megnet_elemental_embedding.json")  # row 0: MEGNet's dummy element
    emb = element_embedding("megnet16")
    np.testing.assert_array_equal(emb.lookup("H"), np.asarray(raw[1], dtype=np.float32))
    np.testing.assert_array_equal(emb.lookup("Fe"), np.asarray(raw[26], dtype=np.float32))
    assert not any(np.array_equal(row, np.asarray(raw[0], dtype=np.float32)) for row in emb.matrix)


def test_onehot_is_identity_over_h_to_lr() -> None:
    emb = element_embedding("onehot")
    np.testing.assert_array_equal(emb.matrix, np.eye(103, dtype=np.float32))
    assert emb.lookup("Fe").argmax() == 25
    assert set(element_embedding("megnet16").elements) <= set(emb.elements)
    assert set(element_embedding("matscholar200").elements) == set(emb.elements)


def test_lookup_shapes() -> None:
    emb = element_embedding("megnet16")
    assert emb.lookup("Na").shape == (16,)
    block = emb.lookup(["Na", "Cl", "Na"])
    assert block.shape == (3, 16)
    np.testing.assert_array_equal(block[0], block[2])
    assert emb.lookup([]).shape == (0, 16)
    assert emb.lookup(iter(("O",))).shape == (1, 16)


@pytest.mark.parametrize(
    ("name", "symbol"), [("megnet16", "Am"), ("matscholar200", "Rf"), ("onehot", "Xx"), ("onehot", "fe")]
)
def test_unknown_element_raises_keyerror_naming_it(name: str, symbol: str) -> None:
    emb = element_embedding(name)
    with pytest.raises(KeyError) as info:
        emb.lookup(["O", symbol])
    assert isinstance(info.value, UnknownElementError)
    assert info.value.symbol == symbol
    assert repr(symbol) in str(info.value) and name in str(info.value)


def test_unknown_embedding_name() -> None:
    with pytest.raises(ValueError, match="cgcnn"):
        element_embedding("cgcnn")  # type: ignore[arg-type]
