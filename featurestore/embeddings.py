"""Element embeddings for Roost/Wren-style models, loaded from the files matminer ships.

Three tables, rows in atomic-number order:

* ``matscholar200``: Matscholar word embeddings (Tshitoyan et al., Nature 2019), 200-d,
  H..Lr (Z = 1..103).  This is the element embedding Wren uses (Goodall thesis, ch. 6).
* ``megnet16``: MEGNet learned element embeddings (Chen et al., Chem. Mater. 2019), 16-d,
  H..Pu (Z = 1..94).  Row 0 of matminer's file is MEGNet's dummy "no element" vector; it is
  dropped rather than silently handed out for unknown elements.
* ``onehot``: identity matrix over H..Lr (Z = 1..103), the union of the elements the two
  learned embeddings cover (Matscholar's set contains MEGNet's), so any element that has a
  learned vector also has a one-hot one.

Unlike matminer's ``MatscholarElementData``/``MEGNetElementData`` we do not impute
missing elements with a column mean: a model fed an invented vector fails silently, so an
element outside the table raises :class:`UnknownElementError` instead.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Literal, get_args

import numpy as np
from pymatgen.core.periodic_table import Element

__all__ = ["EMBEDDING_NAMES", "ElementEmbedding", "UnknownElementError", "element_embedding"]

EmbeddingName = Literal["matscholar200", "megnet16", "onehot"]
EMBEDDING_NAMES: tuple[str, ...] = get_args(EmbeddingName)

_ONEHOT_MAX_Z = 103  # Lr: the last element with a Matscholar vector


class UnknownElementError(KeyError):
    """An element symbol that the chosen embedding has no row for."""

    def __init__(self, symbol: str, embedding: str) -> None:
        self.symbol = symbol
        self.embedding = embedding
        super().__init__(symbol)

    def __str__(self) -> str:  # KeyError would print repr(args[0]) only
        return f"element {self.symbol!r} is not in the {self.embedding!r} element embedding"


@dataclass(frozen=True, eq=False)
class ElementEmbedding:
    """An element -> vector table; ``matrix`` is read-only and shared by every caller."""

    name: str
    elements: tuple[str, ...]
    matrix: np.ndarray  # (n_elements, dim) float32
    index: dict[str, int]

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    def lookup(self, symbols: str | Iterable[str]) -> np.ndarray:
        """Rows for ``symbols`` (one symbol gives a 1-d vector); raises UnknownElementError."""
        if isinstance(symbols, str):
            return self.matrix[self._row(symbols)]
        rows = [self._row(s) for s in symbols]
        return self.matrix[np.asarray(rows, dtype=np.intp)].reshape(len(rows), self.dim)

    def _row(self, symbol: str) -> int:
        try:
            return self.index[symbol]
        except KeyError:
            raise UnknownElementError(symbol, self.name) from None


def element_embedding(name: EmbeddingName) -> ElementEmbedding:
    """The named element embedding, read from disk once per process."""
    if name not in EMBEDDING_NAMES:
        raise ValueError(f"unknown element embedding {name!r}; choose one of {', '.join(EMBEDDING_NAMES)}")
    return _load(name)


@cache
def _load(name: str) -> ElementEmbedding:
    if name == "matscholar200":
        raw = _read_matminer_json("matscholar_els.json")
        symbols = sorted(raw, key=lambda s: Element(s).Z)
        vectors = [raw[s] for s in symbols]
    elif name == "megnet16":
        raw = _read_matminer_json("megnet_elemental_embedding.json")
        symbols = [Element.from_Z(z).symbol for z in range(1, len(raw))]  # row z is element Z
        vectors = raw[1:]
    else:
        symbols = [Element.from_Z(z).symbol for z in range(1, _ONEHOT_MAX_Z + 1)]
        vectors = np.eye(len(symbols))
    return _make(name, symbols, vectors)


def _make(name: str, symbols: list[str], vectors: object) -> ElementEmbedding:
    matrix = np.ascontiguousarray(vectors, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[0] != len(symbols) or not np.isfinite(matrix).all():
        raise ValueError(f"malformed {name} embedding: shape {matrix.shape} for {len(symbols)} elements")
    matrix.flags.writeable = False
    return ElementEmbedding(name, tuple(symbols), matrix, {s: i for i, s in enumerate(symbols)})


def _read_matminer_json(filename: str) -> object:
    path = resources.files("matminer.utils") / "data_files" / filename
    return json.loads(path.read_text(encoding="utf-8"))
