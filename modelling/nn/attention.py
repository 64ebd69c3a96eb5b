"""Weighted soft-attention blocks of Roost: segment softmax, attention pooling, message passing.

Everything works on flat tensors indexed by segment ids (one segment per crystal for pooling,
one per receiving node for message passing), so a whole batch is a handful of kernels whatever
the mix of composition sizes: no per-sample Python loop and no padding.

Gathers use ``index_select`` rather than ``x[idx]``: on multi-threaded CPU the backward of
advanced indexing accumulates in a nondeterministic order, so two identical training runs
drift apart; ``index_select`` backs onto ``index_add_``, which is reproducible.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def segment_weighted_softmax(
    logits: Tensor, weights: Tensor, segment: Tensor, n_segments: int
) -> Tensor:
    """Weighted softmax of ``logits`` (n_items, n_heads) within each segment.

    a_k = w_k exp(e_k) / sum_{l in segment(k)} w_l exp(e_l), Roost's eq. 4.3. The per-segment
    maximum is subtracted first so ``exp`` cannot overflow; it is detached because the softmax is
    shift invariant, so its gradient is zero anyway and not worth computing.
    """
    n_heads = logits.shape[1]
    index = segment.unsqueeze(1).expand(-1, n_heads)
    seg_max = logits.new_zeros(n_segments, n_heads).scatter_reduce(
        0, index, logits.detach(), reduce="amax", include_self=False
    )
    numer = weights.unsqueeze(1) * torch.exp(logits - seg_max.index_select(0, segment))
    denom = logits.new_zeros(n_segments, n_heads).index_add_(0, segment, numer)
    # tiny floor: only reached when every weight in a segment is zero, then the answer is 0, not NaN
    return numer / denom.index_select(0, segment).clamp_min(torch.finfo(logits.dtype).tiny)


class MultiHeadMLP(nn.Module):
    """``n_heads`` independent single-hidden-layer LeakyReLU networks run as one batched product.

    Equivalent to a ModuleList of per-head MLPs (same parameter count and initialisation scheme),
    but the heads cost one matmul and one bmm instead of a Python loop over heads.
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.hidden_dim = hidden_dim
        self.hidden = nn.Linear(in_dim, n_heads * hidden_dim)
        self.act = nn.LeakyReLU()
        self.out_weight = nn.Parameter(torch.empty(n_heads, hidden_dim, out_dim))
        self.out_bias = nn.Parameter(torch.empty(n_heads, out_dim))
        bound = 1.0 / math.sqrt(hidden_dim)  # what nn.Linear(hidden_dim, out_dim) would draw
        nn.init.uniform_(self.out_weight, -bound, bound)
        nn.init.uniform_(self.out_bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        """(n, in_dim) -> (n, n_heads, out_dim)."""
        return self.readout(self.hidden_activations(x))

    def hidden_activations(self, x: Tensor) -> Tensor:
        """(n, in_dim) -> the activated hidden layer (n, n_heads, hidden_dim)."""
        return self.act(self.hidden(x)).view(-1, self.n_heads, self.hidden_dim)

    def pair_hidden_activations(self, x: Tensor, left: Tensor, right: Tensor) -> Tensor:
        """Same as ``hidden_activations(cat([x[left], x[right]], 1))`` without building the pair matrix.

        The first layer is linear, so W (x_i (+) x_j) + b = (W_l x_i + b) + W_r x_j: project each
        of the n nodes once and add per pair, instead of multiplying every one of the ~n^2 pair
        rows, which dominate Roost's cost.
        """
        in_dim = x.shape[1]
        weight = self.hidden.weight
        left_part = nn.functional.linear(x, weight[:, :in_dim], self.hidden.bias)
        right_part = nn.functional.linear(x, weight[:, in_dim:])
        # the sum and the activation reuse the gathered copy: two fresh (pairs x heads*hidden) blocks, the largest
        # of a step, instead of four (two gathers, their sum, the activation); 8-9% of a CPU training step
        activated = left_part.index_select(0, left)
        activated += right_part.index_select(0, right)
        nn.functional.leaky_relu_(activated, self.act.negative_slope)
        return activated.view(-1, self.n_heads, self.hidden_dim)

    def pair_forward(self, x: Tensor, left: Tensor, right: Tensor) -> Tensor:
        """Same as ``forward(cat([x[left], x[right]], 1))``: (n_pairs, n_heads, out_dim)."""
        return self.readout(self.pair_hidden_activations(x, left, right))

    def readout(self, hidden: Tensor) -> Tensor:
        """Second layer of every head: (n, n_heads, hidden_dim) -> (n, n_heads, out_dim)."""
        if self.out_weight.shape[2] == 1:
            # a gate: one dot product per head and row, a single pass over the (strided) hidden
            # activations, where bmm would first copy them to a contiguous (heads, n, hidden) block
            return (hidden * self.out_weight[:, :, 0]).sum(-1, keepdim=True) + self.out_bias
        out = torch.bmm(hidden.transpose(0, 1), self.out_weight)  # (heads, n, out)
        return out.transpose(0, 1) + self.out_bias

    def pooled_readout(self, attn: Tensor, hidden: Tensor, segment: Tensor, n_segments: int) -> Tensor:
        """mean over heads of sum_{k in s} attn_k * readout(hidden)_k, for every segment s.

        The second layer is linear, so the attention-weighted sum can be taken over the hidden
        activations first and the layer applied once per segment (sum_k a_k (W h_k + b) =
        W (sum_k a_k h_k) + (sum_k a_k) b): a (hidden x out) product per receiving node instead of
        one per pair, the largest product of a Roost step, 3-4x fewer rows on typical compositions.
        """
        n_heads, hidden_dim = self.n_heads, self.hidden_dim
        pooled = hidden.new_zeros(n_segments, n_heads * hidden_dim).index_add_(
            0, segment, (attn.unsqueeze(-1) * hidden).reshape(-1, n_heads * hidden_dim)
        ).view(n_segments, n_heads, hidden_dim)
        # sum of the attention per segment: 1, or 0 for a segment whose weights are all zero
        attn_sum = attn.new_zeros(n_segments, n_heads).index_add_(0, segment, attn)
        out = torch.bmm(pooled.transpose(0, 1), self.out_weight)  # (heads, n_segments, out)
        out = out + attn_sum.t().unsqueeze(-1) * self.out_bias.unsqueeze(1)
        return out.mean(dim=0)


def attention_pool(
    gate_logits: Tensor, messages: Tensor, weights: Tensor, segment: Tensor, n_segments: int
) -> Tensor:
    """Sum per segment of the messages (n, heads, out) weighted by the weighted softmax of the
    gate logits (n, heads), then averaged over heads -> (n_segments, out).

    Heads are averaged so the output scale does not grow with their number; the thesis's eq. 4.4
    sums them, which differs only by a factor 1/M that the message network's last layer absorbs.
    This is the reference form; the layers below compute the same through
    :meth:`MultiHeadMLP.pooled_readout`.
    """
    attn = segment_weighted_softmax(gate_logits, weights, segment, n_segments)
    # the sum over items and the mean over heads are both linear: average heads first, scatter once
    weighted = (attn.unsqueeze(-1) * messages).mean(dim=1)
    return messages.new_zeros(n_segments, messages.shape[2]).index_add_(0, segment, weighted)


class WeightedAttentionPooling(nn.Module):
    """Pool items into their segments with multi-head weighted soft attention.

    out_s = mean_m sum_{k in s} a_k^m g^m(x_k), with a^m the weighted softmax of gate f^m(x_k):
    Roost's readout, where each element decides how much its presence counts for the material.
    """

    def __init__(
        self, in_dim: int, out_dim: int, n_heads: int, gate_hidden: int, msg_hidden: int
    ) -> None:
        super().__init__()
        self.gate = MultiHeadMLP(in_dim, gate_hidden, 1, n_heads)
        self.message = MultiHeadMLP(in_dim, msg_hidden, out_dim, n_heads)

    def forward(self, x: Tensor, weights: Tensor, segment: Tensor, n_segments: int) -> Tensor:
        """x (n_items, in_dim), weights/segment (n_items,) -> (n_segments, out_dim)."""
        attn = segment_weighted_softmax(self.gate(x).squeeze(-1), weights, segment, n_segments)
        return self.message.pooled_readout(attn, self.message.hidden_activations(x), segment, n_segments)


class MessageLayer(nn.Module):
    """One Roost element update: h_i += mean_m sum_j a_ij^m g^m(h_i (+) h_j) over the edges into i.

    It is attention pooling of the directed pair features h_i (+) h_j, grouped by the receiving
    node i and weighted by the sender's fractional weight w_j (eqs. 4.2-4.4); the pair features
    are never materialised (see :meth:`MultiHeadMLP.pair_forward`).
    """

    def __init__(self, fea_len: int, n_heads: int, gate_hidden: int, msg_hidden: int) -> None:
        super().__init__()
        self.gate = MultiHeadMLP(2 * fea_len, gate_hidden, 1, n_heads)
        self.message = MultiHeadMLP(2 * fea_len, msg_hidden, fea_len, n_heads)

    def forward(
        self, h: Tensor, weights: Tensor, edge_src: Tensor, edge_dst: Tensor,
        edge_weights: Tensor | None = None,
    ) -> Tensor:
        """h (n_nodes, fea_len); edges run src (j, sender) -> dst (i, receiver). The attention weight of an edge
        is its sender's weight, unless ``edge_weights`` gives one per edge (Wren's merged identical positions,
        whose self-loops count one copy fewer)."""
        gate_logits = self.gate.pair_forward(h, edge_dst, edge_src).squeeze(-1)
        if edge_weights is None:
            edge_weights = weights.index_select(0, edge_src)
        attn = segment_weighted_softmax(gate_logits, edge_weights, edge_dst, h.shape[0])
        hidden = self.message.pair_hidden_activations(h, edge_dst, edge_src)
        return h + self.message.pooled_readout(attn, hidden, edge_dst, h.shape[0])
