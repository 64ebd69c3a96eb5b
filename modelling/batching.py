"""Flat-tensor storage of stoichiometry graphs and fast batch slicing for Roost.

A data set's compositions are flattened once into node arrays (element id, fractional weight)
with CSR-style offsets, and every dense graph's edges are built in one vectorised pass. A
training step then only gathers contiguous ranges for the requested crystals and shifts their
node indices: no per-sample Python objects, graph building or collation inside the loop.

Graph convention: inside one composition every ordered pair (i, j), i != j, is an edge that
carries a message from j (``edge_src``) to i (``edge_dst``): the thesis's "other elements in the
composition". A single-element composition would then have no edges, so it gets one self-loop
instead: its node still receives a learned, element-dependent update g(h_i (+) h_i) with
attention 1, so elemental solids go through the same layers as everything else rather than
skipping message passing. (aviary's reference code keeps the self-pair i == j in every
composition; we keep it only where it is needed.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor


class CompositionError(ValueError):
    """A composition cannot be turned into a graph (unknown element, bad amount, duplicate)."""


@dataclass(frozen=True, eq=False)  # tensors have no single truth value to compare by
class Batch:
    """The graphs of ``n_crystals`` compositions, nodes renumbered from 0 in batch order."""

    elem_idx: Tensor  # (n_nodes,) int64 row of the element embedding
    weights: Tensor  # (n_nodes,) fractional weight; sums to 1 per crystal
    edge_src: Tensor  # (n_edges,) int64 sending node j
    edge_dst: Tensor  # (n_edges,) int64 receiving node i
    crystal_idx: Tensor  # (n_nodes,) int64 position of the node's crystal in the batch
    n_crystals: int

    @property
    def n_nodes(self) -> int:
        return int(self.elem_idx.shape[0])

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            self.elem_idx.to(device),
            self.weights.to(device),
            self.edge_src.to(device),
            self.edge_dst.to(device),
            self.crystal_idx.to(device),
            self.n_crystals,
        )


def _concat_ranges(starts: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
    """Indices of the concatenated ranges [s, s + l) and, for each, which range it came from."""
    owner = torch.repeat_interleave(torch.arange(len(lengths)), lengths)
    out_starts = torch.cumsum(lengths, 0) - lengths
    index = torch.arange(int(lengths.sum())) - out_starts[owner] + starts[owner]
    return index, owner


def _first_repeated_element(crystal: Tensor, elem: Tensor) -> int | None:
    """The first crystal listing an element twice, or None: repeats are equal neighbours once
    nodes are sorted by (crystal, element)."""
    if len(elem) == 0:
        return None
    key = torch.sort(crystal * (int(elem.max()) + 1) + elem).values
    repeated = key[1:][key[1:] == key[:-1]]
    return int(repeated[0]) // (int(elem.max()) + 1) if len(repeated) else None


def _dense_edges(node_offsets: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """All ordered pairs i != j within each crystal (a self-loop for singletons), vectorised.

    Enumerates the n*n grid of every crystal at once and drops the diagonal except where n == 1.
    Returns global (src, dst) node ids, grouped by crystal then by dst, and edge offsets.
    """
    n = node_offsets[1:] - node_offsets[:-1]
    grid, owner = _concat_ranges(torch.zeros_like(n), n * n)
    n_own = n[owner]
    dst_local, src_local = grid // n_own, grid % n_own
    keep = (dst_local != src_local) | (n_own == 1)
    base = node_offsets[:-1][owner]
    edge_counts = torch.where(n == 1, torch.ones_like(n), n * (n - 1))
    edge_offsets = torch.cat([n.new_zeros(1), torch.cumsum(edge_counts, 0)])
    return (base + src_local)[keep], (base + dst_local)[keep], edge_offsets


class CompositionGraphs:
    """Every composition of a data set as dense weighted stoichiometry graphs in flat tensors.

    Build once with :meth:`from_compositions` or :meth:`from_flat`; call :meth:`slice` per step.
    """

    def __init__(self, elem_idx: Tensor, weights: Tensor, node_offsets: Tensor) -> None:
        """Takes already-normalised arrays; use the constructors, which validate and normalise."""
        self.elem_idx = elem_idx
        self.weights = weights
        self.node_offsets = node_offsets
        self.edge_src, self.edge_dst, self.edge_offsets = _dense_edges(node_offsets)

    @classmethod
    def from_flat(
        cls,
        elem_idx: ArrayLike | Tensor,
        amounts: ArrayLike | Tensor,
        node_offsets: ArrayLike | Tensor,
        dtype: torch.dtype = torch.float32,
    ) -> CompositionGraphs:
        """From flat element ids and (unnormalised) amounts, crystal k owning nodes
        ``node_offsets[k]:node_offsets[k + 1]``. Amounts are divided by each crystal's total,
        so Fe2O3 and Fe4O6 give identical graphs."""
        elem = torch.as_tensor(elem_idx, dtype=torch.int64).reshape(-1)
        amt = torch.as_tensor(amounts, dtype=torch.float64).reshape(-1)
        offsets = torch.as_tensor(node_offsets, dtype=torch.int64).reshape(-1)
        if elem.shape != amt.shape:
            raise CompositionError(f"{len(elem)} element ids but {len(amt)} amounts")
        if len(offsets) < 1 or offsets[0] != 0 or offsets[-1] != len(elem):
            raise CompositionError("node_offsets must start at 0 and end at the number of nodes")
        counts = offsets[1:] - offsets[:-1]
        if torch.any(counts < 1):
            bad = int(torch.nonzero(counts < 1)[0])
            raise CompositionError(f"composition {bad} has no elements")
        if torch.any(elem < 0):
            raise CompositionError("element ids must be non-negative")
        if not torch.all(torch.isfinite(amt) & (amt > 0)):
            bad = int(torch.nonzero(~(torch.isfinite(amt) & (amt > 0)))[0])
            raise CompositionError(f"amount {float(amt[bad])} at node {bad} is not positive")
        crystal = torch.repeat_interleave(torch.arange(len(counts)), counts)
        dup = _first_repeated_element(crystal, elem)
        if dup is not None:
            raise CompositionError(f"composition {dup} lists an element twice")
        totals = torch.zeros(len(counts), dtype=torch.float64).index_add_(0, crystal, amt)
        return cls(elem, (amt / totals[crystal]).to(dtype), offsets)

    @classmethod
    def from_compositions(
        cls,
        compositions: Sequence[Mapping[str, float]],
        elem_index: Mapping[str, int],
        dtype: torch.dtype = torch.float32,
    ) -> CompositionGraphs:
        """From dicts element symbol -> amount (e.g. {"Fe": 2, "O": 3}) and a symbol -> embedding
        row mapping. Flattening the dicts is the only per-composition Python work, done once."""
        counts = [len(comp) for comp in compositions]
        symbols = list(chain.from_iterable(comp.keys() for comp in compositions))
        try:
            elem = [elem_index[s] for s in symbols]
        except KeyError as err:
            where = next(i for i, comp in enumerate(compositions) if err.args[0] in comp)
            symbol = err.args[0]
            raise CompositionError(
                f"composition {where} ({dict(compositions[where])}): unknown element {symbol!r}"
            ) from None
        amounts = list(chain.from_iterable(comp.values() for comp in compositions))
        offsets = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])
        return cls.from_flat(
            np.asarray(elem, dtype=np.int64), np.asarray(amounts, dtype=np.float64), offsets, dtype
        )

    def __len__(self) -> int:
        return int(self.node_offsets.shape[0]) - 1

    @property
    def n_nodes(self) -> int:
        return int(self.elem_idx.shape[0])

    @property
    def n_edges(self) -> int:
        return int(self.edge_src.shape[0])

    def slice(self, batch_indices: ArrayLike | Tensor) -> Batch:
        """The batch of the given crystals, in the given order (repeats allowed).

        Gathers each crystal's node and edge ranges and shifts edge endpoints from the data set's
        numbering to the batch's: O(batch nodes + edges) tensor ops, no loop over crystals.
        """
        idx = torch.as_tensor(batch_indices, dtype=torch.int64).reshape(-1)
        if len(idx) and (int(idx.min()) < -len(self) or int(idx.max()) >= len(self)):
            raise IndexError(f"crystal index out of range for {len(self)} compositions")
        idx = torch.remainder(idx, len(self))
        node_starts = self.node_offsets[idx]
        node_counts = self.node_offsets[idx + 1] - node_starts
        nodes, crystal_idx = _concat_ranges(node_starts, node_counts)
        new_starts = torch.cumsum(node_counts, 0) - node_counts

        edge_starts = self.edge_offsets[idx]
        edges, edge_owner = _concat_ranges(edge_starts, self.edge_offsets[idx + 1] - edge_starts)
        shift = (new_starts - node_starts)[edge_owner]
        return Batch(
            elem_idx=self.elem_idx[nodes],
            weights=self.weights[nodes],
            edge_src=self.edge_src[edges] + shift,
            edge_dst=self.edge_dst[edges] + shift,
            crystal_idx=crystal_idx,
            n_crystals=len(idx),
        )
