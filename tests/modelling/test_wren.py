"""Wren: Wyckoff-set graphs, invariance to equivalent Wyckoff representations, polymorphs, hypothetical labels."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from matlake.errors import InputError
from matlake.featurestore.protostructure import equivalent_protostructures, load_aflow_prototypes, protostructure_row
from matlake.modelling.ensemble import ensemble_predict
from matlake.modelling.models.roost import Roost
from matlake.modelling.models.wren import Wren
from matlake.modelling.predict import label_inputs
from matlake.modelling.train import (TrainConfig, element_table, model_inputs, predict_graphs, train_member,
                                     wyckoff_table)
from matlake.modelling.wyckoff_graphs import (ProtostructureLabelError, WyckoffBatch, WyckoffGraphs,
                                              check_protostructure, protostructure_composition)

SMALL = {"elem_fea_len": 16, "sym_fea_len": 16, "n_graph": 2, "elem_gate_hidden": 32, "elem_msg_hidden": 32,
         "cry_gate_hidden": 32, "cry_msg_hidden": 32, "out_hidden": [64, 32]}


@pytest.fixture(scope="module")
def index() -> dict[str, int]:
    return element_table()[1]


@pytest.fixture(scope="module")
def aflow_labels() -> list[str]:
    """Protostructure labels of the 288 AFLOW prototypes shipped with pymatgen (element-decorated)."""
    return [protostructure_row(s)["protostructure"] for _, s in load_aflow_prototypes()]


def untrained(seed: int = 0, **hparams) -> Wren:
    torch.manual_seed(seed)
    elements, _ = element_table()
    return Wren(elements, wyckoff_table(), **{**SMALL, **hparams}).eval()


def predict(model: torch.nn.Module, graphs) -> np.ndarray:
    return predict_graphs(model, graphs, 0.0, 1.0, "cpu")[0]


# ---- graphs -----------------------------------------------------------------------------------------------------


def test_nodes_are_occupied_positions_with_fractional_multiplicities(index):
    # a made-up label with a multi-letter count: O on two "i" and one "j" positions of Pmmm (47), Cu on "r";
    # i, j and r all have multiplicity 2 there, so O6Cu2 = A3B
    label = "A3B_oP8_47_2ij_r:O-Cu"
    with pytest.raises(ProtostructureLabelError, match="2 Wyckoff groups for 1 elements"):
        check_protostructure("A3B_oP8_47_2ij_r:O")
    equivalents = equivalent_protostructures(label)
    expanded = WyckoffGraphs.from_labels([label], index, merge_identical=False).slice([0])
    merged = WyckoffGraphs.from_labels([label], index).slice([0])
    assert merged.n_crystals == 1 and merged.n_graphs == expanded.n_graphs == len(equivalents)
    # the first graph is the label's canonical form: 2 x i and 1 x j for O, 1 x r for Cu -> 4 positions
    first = expanded.graph_idx == 0
    assert sorted(expanded.elem_idx[first].tolist()) == sorted([index["O"]] * 3 + [index["Cu"]])
    assert expanded.weights[first].tolist() == pytest.approx([0.25] * 4)
    # merged: the two O on "i" are one node that counts twice in pooling and in the others' attention
    first = merged.graph_idx == 0
    assert merged.elem_idx[first].tolist() == [index["O"], index["O"], index["Cu"]]
    assert merged.position_weights[first].tolist() == pytest.approx([0.25] * 3)
    assert merged.weights[first].tolist() == pytest.approx([0.5, 0.25, 0.25])
    into_cu = (merged.edge_dst == 2)  # node 2 = Cu receives from O-i (two copies) and O-j
    assert merged.edge_src[into_cu].tolist() == [0, 1]
    assert merged.edge_weights[into_cu].tolist() == pytest.approx([0.5, 0.25])
    self_loop = (merged.edge_src == 0) & (merged.edge_dst == 0)  # each O-i copy hears the other one
    assert merged.edge_weights[self_loop].tolist() == pytest.approx([0.25])
    for batch in (merged, expanded):  # pooling weights sum to one in every graph
        sums = torch.zeros(batch.n_graphs, dtype=torch.float64).index_add_(0, batch.graph_idx, batch.weights.double())
        np.testing.assert_allclose(sums.numpy(), 1.0, atol=1e-6)
    assert protostructure_composition(label) == {"O": 6.0, "Cu": 2.0}


def test_merging_identical_positions_computes_the_expanded_graph(index, aflow_labels):
    labels = [*aflow_labels, "A_aP4_2_2i:Si", "AB2_aP3_1_a_2a:Ti-O", "A3B_oP8_47_2ij_r:O-Cu", "A_cF4_225_a:Cu"]
    merged = WyckoffGraphs.from_labels(labels, index)
    expanded = WyckoffGraphs.from_labels(labels, index, merge_identical=False)
    assert merged.n_edges < 0.8 * expanded.n_edges  # the point of merging
    model = untrained()
    np.testing.assert_allclose(predict(model, merged), predict(model, expanded), rtol=0, atol=1e-6)


def test_slices_equal_graphs_built_from_the_subset(index, aflow_labels):
    graphs = WyckoffGraphs.from_labels(aflow_labels, index)
    pick = [5, 0, 4, 200, 5, 77, 287]  # 4: A_mP4_4_2a:Te, two Te on "a" merge into one node
    sliced = graphs.slice(pick)
    alone = WyckoffGraphs.from_labels([aflow_labels[i] for i in pick], index).slice(range(len(pick)))
    for field in ("elem_idx", "wyckoff_idx", "weights", "position_weights", "edge_src", "edge_dst", "edge_weights",
                  "graph_idx", "graph_crystal"):
        assert torch.equal(getattr(sliced, field), getattr(alone, field)), field
    assert sliced.n_graphs == alone.n_graphs and sliced.n_crystals == len(pick)
    # dense graphs: n (n - 1) directed edges per graph, plus a self-loop on each merged node and on a lone node
    expanded = WyckoffGraphs.from_labels([aflow_labels[i] for i in pick], index, merge_identical=False)
    for batch, merged in ((sliced, True), (expanded.slice(range(len(pick))), False)):
        n = torch.bincount(batch.graph_idx, minlength=batch.n_graphs)
        edges = torch.bincount(batch.graph_idx[batch.edge_dst], minlength=batch.n_graphs)
        loops = torch.bincount(batch.graph_idx[batch.edge_src[batch.edge_src == batch.edge_dst]],
                               minlength=batch.n_graphs)
        assert torch.equal(edges, n * (n - 1) + loops)
        assert torch.equal(batch.graph_idx[batch.edge_src], batch.graph_idx[batch.edge_dst])
        if not merged:
            assert torch.equal(loops, (n == 1).long())
    counts = WyckoffGraphs.from_labels([aflow_labels[i] for i in pick], index).counts
    assert int(counts.max()) > 1  # the pick includes merged positions
    assert torch.equal(sliced.weights, sliced.position_weights * counts.float())


@pytest.mark.parametrize("label, reason", [
    ("NaCl", "not of the form"),
    ("AB_cF8_225_a_b", "not of the form"),
    ("AB_cF8_231_a_b:Cl-Na", "space group 231"),
    ("AB_cF8_225_a_z:Cl-Na", "has no Wyckoff position 'z'"),
    ("AB_cF8_225_a_c:Cl-Na", "multiplicities give AB2, the formula says AB"),
    ("AB_cF8_225_a:Cl-Na", "1 Wyckoff groups for 2 elements"),
    ("AB_cF8_225_a_b:Cl-Cl", "listed twice"),
    ("AB_cF8_225_a_b:Cl-Zz", "element 'Zz' has no embedding"),
])
def test_invalid_labels_are_clear_input_errors(index, label, reason):
    with pytest.raises(InputError, match=reason) as info:
        WyckoffGraphs.from_labels(["AB_cF8_225_a_b:Cl-Na", label], index)
    assert label in str(info.value) and "\n" not in str(info.value)


# ---- invariance -------------------------------------------------------------------------------------------------


def _every_representation(labels: list[str]) -> tuple[list[str], list[int]]:
    written, owner = [], []
    for k, label in enumerate(labels):
        for equivalent in equivalent_protostructures(label):
            written.append(equivalent)
            owner.append(k)
    return written, owner


def test_untrained_prediction_does_not_depend_on_the_written_setting(index, aflow_labels):
    multi = [lab for lab in aflow_labels if len(equivalent_protostructures(lab)) > 1]
    assert len(multi) > 100  # the test means something only with many multi-setting prototypes
    written, owner = _every_representation(multi)
    model = untrained()
    pred = predict(model, WyckoffGraphs.from_labels(written, index))
    owner_arr = np.asarray(owner)
    for k in range(len(multi)):
        same = pred[owner_arr == k]
        assert np.ptp(same) < 1e-6, multi[k]
    # and the protostructures themselves are told apart: the check above is not about a constant model
    assert len(np.unique(np.round(pred, 5))) > 0.5 * len(multi)


def test_a_single_setting_would_not_be_invariant(index, aflow_labels):
    """What the averaging buys: one equivalent representation alone gives a setting-dependent prediction."""
    label = next(lab for lab in aflow_labels if len(equivalent_protostructures(lab)) >= 4)
    model = untrained()
    batch = WyckoffGraphs.from_labels([label], index).slice([0])
    single = []
    for g in range(batch.n_graphs):  # each equivalent representation as if it were the only one
        nodes = batch.graph_idx == g
        renumber = torch.cumsum(nodes.long(), 0) - 1
        edges = nodes[batch.edge_dst]
        one = WyckoffBatch(batch.elem_idx[nodes], batch.wyckoff_idx[nodes], batch.weights[nodes],
                           renumber[batch.edge_src[edges]], renumber[batch.edge_dst[edges]],
                           torch.zeros(int(nodes.sum()), dtype=torch.int64), torch.zeros(1, dtype=torch.int64), 1, 1,
                           position_weights=batch.position_weights[nodes], edge_weights=batch.edge_weights[edges])
        with torch.no_grad():
            single.append(float(model(one)[0][0, 0]))
    assert np.ptp(single) > 1e-4
    with torch.no_grad():
        assert float(model(batch)[0][0, 0]) != pytest.approx(single[0], abs=1e-6)


def test_symmetry_dropout_masks_whole_crystals_in_training_only(index, aflow_labels):
    """With ``sym_dropout`` a training pass gives each crystal either its full representation or the one with no
    symmetry channel (all its settings and positions alike); evaluation always uses the symmetry."""
    batch = WyckoffGraphs.from_labels(aflow_labels[:60], index).slice(list(range(60)))
    model = untrained(sym_dropout=0.5)
    without = untrained(sym_dropout=0.5)
    with torch.no_grad():
        without.embed_sym.weight.zero_()
        without.embed_sym.bias.zero_()
        full, bare = model.representations(batch), without.representations(batch)
        assert torch.equal(untrained(sym_dropout=0.0).representations(batch), full)  # eval mode: no dropout
        torch.manual_seed(3)
        trained_pass = model.train().representations(batch)
    is_full = torch.isclose(trained_pass, full, atol=1e-12).all(dim=1)
    is_bare = torch.isclose(trained_pass, bare, atol=1e-12).all(dim=1)
    assert bool((is_full | is_bare).all())  # never a mixture within one crystal
    assert 10 < int(is_bare.sum()) < 50  # about half of 60 dropped
    assert not bool((full == bare).all(dim=1).any())  # the two modes differ for every crystal
    with pytest.raises(ValueError, match="sym_dropout"):
        untrained(sym_dropout=1.0)


# ---- polymorphs -------------------------------------------------------------------------------------------------


def _rocksalt_and_caesium_chloride():
    from pymatgen.core import Lattice, Structure

    rocksalt = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    cscl_type = Structure(Lattice.cubic(3.4), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    return rocksalt, cscl_type


def test_polymorphs_get_different_wren_and_identical_roost_predictions(index):
    rocksalt, cscl_type = _rocksalt_and_caesium_chloride()
    labels = [protostructure_row(s)["protostructure"] for s in (rocksalt, cscl_type)]
    assert labels[0] != labels[1] and labels[0].startswith("AB_cF8_225") and labels[1].startswith("AB_cP2_221")
    wren = predict(untrained(), WyckoffGraphs.from_labels(labels, index))
    assert abs(wren[0] - wren[1]) > 1e-4
    torch.manual_seed(0)
    roost = Roost(element_table()[0], elem_fea_len=16, n_graph=1, out_hidden=(32,)).eval()
    compositions = [dict(s.composition.as_dict()) for s in (rocksalt, cscl_type)]
    same = predict(roost, model_inputs("roost", compositions))
    assert same[0] == same[1]


# AB prototypes: rocksalt, CsCl, zincblende, wurtzite, NiAs (letters per element in alphabetical order)
PROTOTYPES = {"rocksalt": "AB_cF8_225_a_b", "cscl": "AB_cP2_221_a_b", "zincblende": "AB_cF8_216_a_c",
              "wurtzite": "AB_hP4_186_b_b", "nias": "AB_hP4_194_a_c"}
OFFSET = {"rocksalt": 0.0, "cscl": 0.45, "zincblende": 0.15, "wurtzite": 0.3, "nias": 0.6}
CATIONS = ["Li", "Na", "K", "Rb", "Cs", "Mg", "Ca", "Sr", "Ba", "Zn", "Cd", "Cu", "Ag", "Ga", "In", "Al"]
ANIONS = ["F", "Cl", "Br", "I", "O", "S", "Se", "N", "P", "As"]


def polymorph_set() -> tuple[list[str], np.ndarray, list[int]]:
    """Made-up energies of AB polymorphs: a composition term (electronegativity difference) plus a structure
    term whose ordering depends on the composition (four-fold coordination pays off for small differences)."""
    from pymatgen.core import Element

    labels, energies, group = [], [], []
    for k, (cation, anion) in enumerate(itertools.product(CATIONS, ANIONS)):
        dx = abs(Element(anion).X - Element(cation).X)
        system = "-".join(sorted((cation, anion)))
        for name, prototype in PROTOTYPES.items():
            tetrahedral = name in ("zincblende", "wurtzite")
            energy = -0.8 * dx + OFFSET[name] + (0.35 * (dx - 1.5) if tetrahedral else 0.0)
            labels.append(f"{prototype}:{system}")
            energies.append(energy)
            group.append(k)
    return labels, np.asarray(energies), group


def test_trained_wren_ranks_held_out_polymorphs_and_stays_invariant(index):
    labels, energies, group = polymorph_set()
    group_arr = np.asarray(group)
    rng = np.random.default_rng(0)
    held_out = set(rng.choice(group_arr.max() + 1, size=30, replace=False).tolist())
    test = np.isin(group_arr, list(held_out))
    config = TrainConfig(epochs=40, batch_size=32, learning_rate=1e-3, seed=0, threads=1, device="cpu",
                         hparams=SMALL, architecture="wren")
    result = train_member([lab for lab, t in zip(labels, test) if not t], energies[~test], [], [], config)
    assert result.hparams["sym_fea_len"] == 16 and config.resolved_optimiser == "adamw"
    test_labels = [lab for lab, t in zip(labels, test) if t]
    pred = ensemble_predict([result.state], result.hparams, result.normaliser, test_labels,
                            architecture="wren")["mean"]
    truth, owner = energies[test], group_arr[test]
    correct = total = 0
    for g in held_out:
        idx = np.flatnonzero(owner == g)
        for i, j in itertools.combinations(idx, 2):
            total += 1
            correct += (pred[i] < pred[j]) == (truth[i] < truth[j])
    assert total == 30 * 10
    assert correct / total > 0.75, f"{correct}/{total} held-out polymorph pairs ranked correctly"

    # invariance holds for the trained weights too, on every written setting of these and the AFLOW prototypes
    written, owner = _every_representation(sorted(set(test_labels)) + ["A2B_cF12_225_c_a:F-Ca"])
    trained = ensemble_predict([result.state], result.hparams, result.normaliser, written,
                               architecture="wren")["mean"]
    for k in set(owner):
        assert np.ptp(trained[np.asarray(owner) == k]) < 1e-6


def test_a_hand_typed_label_predicts_without_a_structure(index):
    inputs = label_inputs(["AB_cF8_225_a_b:Cl-Na", " AB_cP2_221_b_a:Cl-Cs "])
    assert inputs.material_ids == [None, None] and inputs.structure_ids == [None, None]
    assert inputs.protostructures == ["AB_cF8_225_a_b:Cl-Na", "AB_cP2_221_b_a:Cl-Cs"]
    assert inputs.amounts[0] == {"Cl": 4.0, "Na": 4.0}
    model = untrained()
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    stats = ensemble_predict([state], model.hparams, {"mean": 0.0, "std": 1.0}, inputs.protostructures,
                             architecture="wren")
    assert stats["mean"].shape == (2,) and np.all(np.isfinite(stats["mean"]))
    with pytest.raises(InputError, match="has no Wyckoff position"):
        label_inputs(["AB_cF8_225_a_b:Cl-Na", "AB_cF8_225_q_b:Cl-Na"])
