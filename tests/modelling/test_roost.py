"""Roost: attention blocks against naive references, symmetries, saving, and learning."""

from __future__ import annotations

import json
import random
import time

import numpy as np
import pytest
import torch

from matlake.modelling.batching import CompositionGraphs
from matlake.modelling.losses import robust_l1_loss
from matlake.modelling.models.roost import Roost
from matlake.modelling.nn.attention import (
    MessageLayer,
    MultiHeadMLP,
    WeightedAttentionPooling,
    attention_pool,
    segment_weighted_softmax,
)

ELEMENTS = ["H", "Li", "C", "N", "O", "F", "Na", "Mg", "Al", "Si", "P", "S", "Cl", "K", "Ca",
            "Ti", "Fe", "Co", "Ni", "Cu", "Zn", "Ga", "Sr", "Y", "Ba", "La"]
ELEM_INDEX = {s: i for i, s in enumerate(ELEMENTS)}
EMBED_DIM = 200


def element_table(seed: int = 0) -> torch.Tensor:
    return torch.randn(len(ELEMENTS), EMBED_DIM, generator=torch.Generator().manual_seed(seed))


def make_model(seed: int = 0, **hparams) -> Roost:
    torch.manual_seed(seed)
    return Roost(element_table(), **hparams).eval()


def predict(model: Roost, comps: list[dict[str, float]]) -> tuple[torch.Tensor, torch.Tensor]:
    graphs = CompositionGraphs.from_compositions(comps, ELEM_INDEX)
    with torch.no_grad():
        return model(graphs.slice(np.arange(len(comps))))


def random_compositions(n: int, seed: int) -> list[dict[str, float]]:
    rng = random.Random(seed)
    return [
        {s: rng.choice([1, 2, 3, 0.5, 4]) for s in rng.sample(ELEMENTS, rng.randint(1, 6))}
        for _ in range(n)
    ]


# --- building blocks -------------------------------------------------------------------------


def test_segment_weighted_softmax_matches_a_naive_loop_and_survives_large_logits() -> None:
    gen = torch.Generator().manual_seed(1)
    segment = torch.tensor([0, 0, 0, 2, 2, 3])
    weights = torch.rand(6, generator=gen, dtype=torch.float64) + 0.1
    logits = 5 * torch.randn(6, 2, generator=gen, dtype=torch.float64)
    logits[0, 0] = 800.0  # exp would overflow without subtracting the segment maximum
    got = segment_weighted_softmax(logits, weights, segment, n_segments=4)
    for s in (0, 2, 3):
        rows = segment == s
        for h in range(2):
            w, e = weights[rows], logits[rows, h]
            expected = w * torch.exp(e - e.max()) / (w * torch.exp(e - e.max())).sum()
            assert torch.allclose(got[rows, h], expected, atol=1e-12)
    assert torch.isfinite(got).all()


def test_multi_head_mlp_equals_separate_heads_and_pair_forward_equals_concatenation() -> None:
    torch.manual_seed(0)
    mlp = MultiHeadMLP(in_dim=8, hidden_dim=5, out_dim=3, n_heads=4).double()
    x = torch.randn(7, 8, dtype=torch.float64)
    out = mlp(x)
    assert out.shape == (7, 4, 3)
    hidden = torch.nn.functional.leaky_relu(mlp.hidden(x)).view(7, 4, 5)
    for h in range(4):
        assert torch.allclose(out[:, h], hidden[:, h] @ mlp.out_weight[h] + mlp.out_bias[h])
    gate = MultiHeadMLP(in_dim=8, hidden_dim=5, out_dim=1, n_heads=4).double()  # the dot-product path
    hidden = torch.nn.functional.leaky_relu(gate.hidden(x)).view(7, 4, 5)
    for h in range(4):
        assert torch.allclose(gate(x)[:, h], hidden[:, h] @ gate.out_weight[h] + gate.out_bias[h])
    nodes = torch.randn(5, 4, dtype=torch.float64)
    left, right = torch.tensor([0, 1, 4, 2, 2]), torch.tensor([1, 0, 3, 2, 4])
    pairs = torch.cat([nodes[left], nodes[right]], dim=1)
    assert torch.allclose(mlp.pair_forward(nodes, left, right), mlp(pairs), atol=1e-12)


def test_pair_forward_has_the_gradients_of_the_concatenated_form() -> None:
    """The pair path gathers, sums and activates in place; autograd must still see the plain function."""
    torch.manual_seed(3)
    mlp = MultiHeadMLP(in_dim=8, hidden_dim=5, out_dim=3, n_heads=2).double()
    left, right = torch.tensor([0, 1, 3, 2, 2, 0]), torch.tensor([1, 0, 3, 2, 1, 2])
    upstream = torch.randn(6, 2, 3, dtype=torch.float64)
    grads = []
    for form in ("pair", "concatenated"):
        nodes = torch.randn(4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(4), requires_grad=True)
        mlp.zero_grad()
        if form == "pair":
            out = mlp.pair_forward(nodes, left, right)
        else:
            out = mlp(torch.cat([nodes[left], nodes[right]], dim=1))
        (out * upstream).sum().backward()
        grads.append([nodes.grad.clone(), *(p.grad.clone() for p in mlp.parameters())])
    for got, expected in zip(*grads, strict=True):
        assert torch.allclose(got, expected, atol=1e-12)


def test_pooled_readout_equals_pooling_the_messages() -> None:
    """Applying the second layer after the attention sum is the same function as before it,
    including a segment whose weights are all zero (its output stays 0, not the bias)."""
    torch.manual_seed(1)
    mlp = MultiHeadMLP(in_dim=6, hidden_dim=5, out_dim=4, n_heads=3).double()
    x = torch.randn(9, 6, dtype=torch.float64)
    segment = torch.tensor([0, 0, 1, 1, 1, 2, 3, 3, 3])
    weights = torch.tensor([0.5, 0.5, 0.2, 0.3, 0.5, 1.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    logits = torch.randn(9, 3, dtype=torch.float64)
    attn = segment_weighted_softmax(logits, weights, segment, 4)
    got = mlp.pooled_readout(attn, mlp.hidden_activations(x), segment, 4)
    expected = attention_pool(logits, mlp(x), weights, segment, 4)
    assert torch.allclose(got, expected, atol=1e-12)
    assert torch.equal(got[3], torch.zeros(4, dtype=torch.float64))


def test_message_layer_and_pooling_equal_the_reference_form() -> None:
    torch.manual_seed(2)
    layer = MessageLayer(fea_len=4, n_heads=3, gate_hidden=7, msg_hidden=5).double()
    pool = WeightedAttentionPooling(4, 4, n_heads=2, gate_hidden=6, msg_hidden=5).double()
    h = torch.randn(5, 4, dtype=torch.float64)
    weights = torch.tensor([0.25, 0.75, 0.2, 0.3, 0.5], dtype=torch.float64)
    crystal = torch.tensor([0, 0, 1, 1, 1])
    src = torch.tensor([0, 1, 0, 1, 2, 3, 4, 2, 3, 4, 2, 3, 4])
    dst = torch.tensor([0, 0, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4])
    pairs = torch.cat([h[dst], h[src]], dim=1)
    reference = h + attention_pool(
        layer.gate(pairs).squeeze(-1), layer.message(pairs), weights[src], dst, 5
    )
    assert torch.allclose(layer(h, weights, src, dst), reference, atol=1e-12)
    pooled = attention_pool(pool.gate(h).squeeze(-1), pool.message(h), weights, crystal, 2)
    assert torch.allclose(pool(h, weights, crystal, 2), pooled, atol=1e-12)


# --- the model -------------------------------------------------------------------------------


def expected_parameter_count(d_in: int = EMBED_DIM, fea: int = 64, hidden: int = 256) -> int:
    """Counted independently from the architecture description (thesis app. A.1)."""

    def mlp(n_in: int, n_out: int) -> int:
        return n_in * hidden + hidden + hidden * n_out + n_out

    embed = d_in * (fea - 1) + (fea - 1)
    message_layer = 3 * (mlp(2 * fea, 1) + mlp(2 * fea, fea))
    pooling = 3 * (mlp(fea, 1) + mlp(fea, fea))
    widths = [fea, 1024, 512, 256, 128, 64]
    dense = sum(a * b + b for a, b in zip(widths, widths[1:]))
    skips = sum(a * b for a, b in zip(widths, widths[1:]) if a != b)
    return embed + 3 * message_layer + pooling + dense + skips + (64 * 2 + 2)


def test_default_parameter_count_matches_the_thesis_reference_model() -> None:
    model = Roost(element_table())
    n_params = sum(p.numel() for p in model.parameters())
    print(f"default Roost parameters: {n_params:,}")
    assert n_params == expected_parameter_count() == 2_433_221  # "2.4 million" in the thesis
    assert all(p.requires_grad for p in model.parameters())
    assert not model.elem_embedding.requires_grad  # a fixed input table, not a parameter


def test_output_shapes_for_robust_and_plain_heads() -> None:
    comps = [{"Fe": 2, "O": 3}, {"Na": 1, "Cl": 1}, {"Si": 1}]
    mean, log_sigma = predict(make_model(n_targets=2), comps)
    assert mean.shape == log_sigma.shape == (3, 2)
    mean, log_sigma = predict(make_model(robust=False), comps)
    assert mean.shape == (3, 1) and log_sigma is None


def test_permutation_invariance_within_and_across_compositions() -> None:
    model = make_model()
    comps = random_compositions(40, seed=2)
    mean, log_sigma = predict(model, comps)
    rng = random.Random(3)
    order = list(range(len(comps)))
    rng.shuffle(order)
    shuffled = []
    for i in order:
        items = list(comps[i].items())
        rng.shuffle(items)
        shuffled.append(dict(items))
    mean2, log_sigma2 = predict(model, shuffled)
    assert torch.allclose(mean2, mean[order], rtol=0, atol=1e-6)
    assert torch.allclose(log_sigma2, log_sigma[order], rtol=0, atol=1e-6)
    assert mean.std() > 1e-3  # the model does distinguish the compositions


def test_prediction_does_not_depend_on_batch_mates() -> None:
    model = make_model()
    comps = random_compositions(30, seed=5)
    together, _ = predict(model, comps)
    alone = torch.cat([predict(model, [c])[0] for c in comps])
    assert torch.allclose(together, alone, rtol=0, atol=1e-6)


def test_multiples_of_a_formula_are_the_same_material_but_ratios_matter() -> None:
    mean, log_sigma = predict(
        make_model(), [{"Fe": 2, "O": 3}, {"Fe": 4, "O": 6}, {"O": 1.5, "Fe": 1}, {"Fe": 1, "O": 1}]
    )
    assert torch.allclose(mean[0], mean[1], rtol=0, atol=1e-6)
    assert torch.allclose(mean[0], mean[2], rtol=0, atol=1e-6)
    assert torch.allclose(log_sigma[0], log_sigma[1], rtol=0, atol=1e-6)
    assert (mean[0] - mean[3]).abs().item() > 1e-5  # Fe2O3 is not FeO


def test_single_element_compositions_use_their_self_loop() -> None:
    model = make_model()
    mean, _ = predict(model, [{"Si": 1}, {"Fe": 3}, {"Si": 2}])
    assert torch.isfinite(mean).all()
    assert mean[0].item() == pytest.approx(mean[2].item(), abs=1e-7)
    assert (mean[0] - mean[1]).abs().item() > 1e-5
    # the self-loop message changes the node: zeroing the message networks changes the output
    with torch.no_grad():
        for layer in model.graph:
            layer.message.out_weight.zero_()
            layer.message.out_bias.zero_()
    assert (predict(model, [{"Si": 1}])[0] - mean[0]).abs().item() > 1e-6


def test_hparams_are_json_and_rebuild_the_same_model() -> None:
    model = make_model(n_graph=2, out_hidden=(32, 16), n_targets=3)
    hparams = json.loads(json.dumps(model.hparams))
    assert "elem_embedding" not in hparams
    assert hparams["out_hidden"] == [32, 16] and hparams["n_graph"] == 2
    clone = Roost(torch.zeros(len(ELEMENTS), EMBED_DIM), **hparams).eval()
    clone.load_state_dict(model.state_dict())  # the embedding travels in the state dict
    comps = random_compositions(5, seed=6)
    assert torch.equal(predict(clone, comps)[0], predict(model, comps)[0])


def test_every_parameter_gets_a_gradient() -> None:
    model = make_model().train()
    graphs = CompositionGraphs.from_compositions(random_compositions(16, seed=7), ELEM_INDEX)
    mean, log_sigma = model(graphs.slice(np.arange(16)))
    robust_l1_loss(mean, log_sigma, torch.randn(16, 1)).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


@pytest.mark.slow
def test_overfits_a_tiny_data_set() -> None:
    """The full-size model learns 64 compositions with a smooth synthetic target: 150 full-batch
    Adam steps at the thesis learning rate, about 5 s on an idle 2-core CPU."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    comps = random_compositions(64, seed=8)
    graphs = CompositionGraphs.from_compositions(comps, ELEM_INDEX)
    batch = graphs.slice(np.arange(64))
    element_property = torch.randn(len(ELEMENTS), generator=gen)
    mixed = torch.zeros(64).index_add_(
        0, batch.crystal_idx, batch.weights * element_property[batch.elem_idx]
    )
    target = (mixed + 0.5 * mixed**2).unsqueeze(1)
    model = Roost(element_table()).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-4)
    start = time.perf_counter()
    for _ in range(150):
        mean, log_sigma = model(batch)
        loss = robust_l1_loss(mean, log_sigma, target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        mean, log_sigma = model(batch)
    mae = (mean - target).abs().mean().item()
    seconds = time.perf_counter() - start
    print(f"overfit: MAE {mae:.4f} (target std {target.std():.3f}) in {seconds:.1f} s")
    assert mae < 0.1 * target.std().item()
    assert log_sigma.mean().item() < -1.0  # it became confident where it fits


def test_training_is_reproducible_with_two_threads() -> None:
    """Same seed, same steps -> bit-identical losses, also with intra-op parallelism (the
    backward of advanced indexing is not reproducible on multi-threaded CPU; index_select is)."""
    graphs = CompositionGraphs.from_compositions(random_compositions(64, seed=9), ELEM_INDEX)
    batch = graphs.slice(np.arange(64))
    target = torch.randn(64, 1, generator=torch.Generator().manual_seed(1))

    def train() -> list[float]:
        torch.manual_seed(0)
        model = Roost(element_table(), out_hidden=(128, 64)).train()
        optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
        losses = []
        for _ in range(15):
            loss = robust_l1_loss(*model(batch), target)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
        return losses

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert train() == train()
    finally:
        torch.set_num_threads(threads)
