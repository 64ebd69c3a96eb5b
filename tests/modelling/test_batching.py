"""Flat stoichiometry graphs: node/edge layout, normalisation, and slicing."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from matlake.modelling.batching import CompositionError, CompositionGraphs

ELEMENTS = ["H", "Li", "C", "N", "O", "F", "Na", "Mg", "Al", "Si", "P", "S", "Cl", "K", "Ca",
            "Ti", "Fe", "Co", "Ni", "Cu", "Zn", "Ga", "Sr", "Y", "Ba", "La"]
ELEM_INDEX = {s: i for i, s in enumerate(ELEMENTS)}


def random_compositions(n: int, seed: int, max_elems: int = 6) -> list[dict[str, float]]:
    rng = random.Random(seed)
    amounts = [1, 2, 3, 0.5, 1.25]
    return [
        {s: rng.choice(amounts) for s in rng.sample(ELEMENTS, rng.randint(1, max_elems))}
        for _ in range(n)
    ]


def edge_set(batch) -> set[tuple[int, int]]:
    return set(zip(batch.edge_src.tolist(), batch.edge_dst.tolist()))


def test_fe2o3_nacl_si_layout() -> None:
    graphs = CompositionGraphs.from_compositions(
        [{"Fe": 2, "O": 3}, {"Na": 1, "Cl": 1}, {"Si": 1}], ELEM_INDEX
    )
    batch = graphs.slice([0, 1, 2])
    assert batch.n_crystals == 3 and batch.n_nodes == 5
    assert graphs.node_offsets.tolist() == [0, 2, 4, 5]
    assert batch.elem_idx.tolist() == [ELEM_INDEX[s] for s in ["Fe", "O", "Na", "Cl", "Si"]]
    assert batch.weights.tolist() == pytest.approx([0.4, 0.6, 0.5, 0.5, 1.0])
    assert batch.crystal_idx.tolist() == [0, 0, 1, 1, 2]
    # both directions inside Fe2O3 and NaCl, nothing across crystals, a self-loop for Si alone
    assert edge_set(batch) == {(0, 1), (1, 0), (2, 3), (3, 2), (4, 4)}
    assert graphs.edge_offsets.tolist() == [0, 2, 4, 5]


def test_dense_graph_has_all_ordered_pairs_without_self_loops() -> None:
    graphs = CompositionGraphs.from_compositions([{"Y": 1, "Ba": 2, "Cu": 3, "O": 7}], ELEM_INDEX)
    batch = graphs.slice([0])
    assert batch.edge_src.shape[0] == 4 * 3
    assert edge_set(batch) == {(j, i) for i in range(4) for j in range(4) if i != j}
    assert batch.weights.sum().item() == pytest.approx(1.0)


def test_amounts_are_normalised_so_multiples_give_the_same_graph() -> None:
    graphs = CompositionGraphs.from_compositions([{"Fe": 2, "O": 3}, {"Fe": 4, "O": 6}], ELEM_INDEX)
    a, b = graphs.slice([0]), graphs.slice([1])
    for name in ("elem_idx", "weights", "edge_src", "edge_dst", "crystal_idx"):
        assert torch.equal(getattr(a, name), getattr(b, name))


def test_from_flat_matches_from_compositions() -> None:
    comps = random_compositions(50, seed=1)
    from_dicts = CompositionGraphs.from_compositions(comps, ELEM_INDEX)
    elem = [ELEM_INDEX[s] for c in comps for s in c]
    amounts = [a for c in comps for a in c.values()]
    offsets = np.cumsum([0] + [len(c) for c in comps])
    from_flat = CompositionGraphs.from_flat(elem, amounts, offsets)
    for name in ("elem_idx", "weights", "node_offsets", "edge_src", "edge_dst", "edge_offsets"):
        assert torch.equal(getattr(from_dicts, name), getattr(from_flat, name))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_slicing_any_subset_equals_building_from_scratch(seed: int) -> None:
    comps = random_compositions(200, seed=seed)
    graphs = CompositionGraphs.from_compositions(comps, ELEM_INDEX)
    rng = np.random.default_rng(seed)
    subsets = [
        rng.choice(200, size=37, replace=False),  # shuffled order
        rng.choice(200, size=64, replace=True),  # repeats
        np.arange(200),
        np.array([199]),
    ]
    for subset in subsets:
        sliced = graphs.slice(subset)
        scratch = CompositionGraphs.from_compositions([comps[i] for i in subset], ELEM_INDEX)
        full = scratch.slice(np.arange(len(subset)))
        assert sliced.n_crystals == full.n_crystals == len(subset)
        for name in ("elem_idx", "weights", "edge_src", "edge_dst", "crystal_idx"):
            assert torch.equal(getattr(sliced, name), getattr(full, name)), name


def test_slicing_torch_indices_and_empty_batch() -> None:
    graphs = CompositionGraphs.from_compositions(random_compositions(10, seed=3), ELEM_INDEX)
    assert torch.equal(graphs.slice(torch.tensor([3, 1])).elem_idx, graphs.slice([3, 1]).elem_idx)
    empty = graphs.slice([])
    assert empty.n_crystals == 0 and empty.n_nodes == 0 and empty.edge_src.numel() == 0
    with pytest.raises(IndexError):
        graphs.slice([10])


def test_edge_endpoints_stay_inside_their_crystal() -> None:
    graphs = CompositionGraphs.from_compositions(random_compositions(300, seed=4), ELEM_INDEX)
    batch = graphs.slice(np.random.default_rng(0).permutation(300)[:128])
    assert torch.equal(batch.crystal_idx[batch.edge_src], batch.crystal_idx[batch.edge_dst])
    counts = torch.bincount(batch.crystal_idx, minlength=batch.n_crystals)
    expected_edges = torch.where(counts == 1, 1, counts * (counts - 1)).sum()
    assert batch.edge_src.shape[0] == int(expected_edges)
    sums = torch.zeros(batch.n_crystals).index_add_(0, batch.crystal_idx, batch.weights)
    assert torch.allclose(sums, torch.ones(batch.n_crystals))


def test_bad_compositions_raise_composition_error() -> None:
    with pytest.raises(CompositionError, match="unknown element 'Xx'"):
        CompositionGraphs.from_compositions([{"Fe": 1}, {"Xx": 1, "O": 2}], ELEM_INDEX)
    with pytest.raises(CompositionError, match="not positive"):
        CompositionGraphs.from_compositions([{"Fe": 1, "O": 0}], ELEM_INDEX)
    with pytest.raises(CompositionError, match="no elements"):
        CompositionGraphs.from_compositions([{"Fe": 1}, {}], ELEM_INDEX)
    with pytest.raises(CompositionError, match="composition 1 lists an element twice"):
        CompositionGraphs.from_flat([1, 2, 3, 3], [1, 1, 1, 1], [0, 2, 4])
