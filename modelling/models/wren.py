"""Wren: Wyckoff Representation regression (R. Goodall's thesis, ch. 6 and app. A.3).

Roost's architecture on a different set: a node is an occupied Wyckoff position rather than an element.
Its features are a learned projection of the element's Matscholar vector (200 -> 32) concatenated with a
learned projection of the Wyckoff part (the position's embedding row and its fractional multiplicity,
"d_wyk = 445" in the thesis -> 32). Message passing uses the fractional multiplicities as attention weights
(identical positions are merged into one node that counts as its copies, see ``wyckoff_graphs``),
weighted attention pooling gives one vector per Wyckoff representation, and the vectors of all equivalent
representations of a protostructure are averaged before the residual output network, so the prediction is
the same whichever setting the label was written in. Defaults are the thesis's: 3 message-passing layers
with one head, 256 hidden units in the attention networks, output network 256-256-128-64.

``sym_dropout`` (not in the thesis; default 0) hides the Wyckoff channel of whole crystals, chosen at random
with that probability in each training batch, so the element path must predict on its own and a position seen
with other chemistry in training cannot override it (matbench_phonons: azides in a telluride prototype).
Evaluation always reads the symmetry.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from matlake.modelling.nn.attention import MessageLayer, WeightedAttentionPooling
from matlake.modelling.nn.residual import ResidualNetwork
from matlake.modelling.wyckoff_graphs import WyckoffBatch


class Wren(nn.Module):
    """Protostructure -> property regressor; the constructor arguments are its hyper-parameters.

    ``elem_embedding`` (n_elements, d_el) and ``wyckoff_embedding`` (n_positions, d_wyk) are fixed buffers,
    saved in the state dict so a stored model carries the tables it was trained with (the Wyckoff table's
    width is read from it, never assumed). Rebuild with ``Wren(elem, wyckoff, **hparams)``.
    """

    def __init__(
        self,
        elem_embedding: Tensor,
        wyckoff_embedding: Tensor,
        elem_fea_len: int = 32,
        sym_fea_len: int = 32,
        n_graph: int = 3,
        elem_heads: int = 1,
        elem_gate_hidden: int = 256,
        elem_msg_hidden: int = 256,
        cry_heads: int = 1,
        cry_gate_hidden: int = 256,
        cry_msg_hidden: int = 256,
        out_hidden: Sequence[int] = (256, 256, 128, 64),
        n_targets: int = 1,
        robust: bool = True,
        sym_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        dtype = torch.get_default_dtype()
        elements = torch.as_tensor(elem_embedding, dtype=dtype)
        positions = torch.as_tensor(wyckoff_embedding, dtype=dtype)
        if elements.ndim != 2 or positions.ndim != 2:
            raise ValueError("elem_embedding and wyckoff_embedding must be 2-d tables (rows, features)")
        self._hparams: dict[str, Any] = {
            "elem_fea_len": elem_fea_len, "sym_fea_len": sym_fea_len, "n_graph": n_graph,
            "elem_heads": elem_heads, "elem_gate_hidden": elem_gate_hidden, "elem_msg_hidden": elem_msg_hidden,
            "cry_heads": cry_heads, "cry_gate_hidden": cry_gate_hidden, "cry_msg_hidden": cry_msg_hidden,
            "out_hidden": [int(w) for w in out_hidden], "n_targets": n_targets, "robust": robust,
            "sym_dropout": sym_dropout,
        }
        if not 0.0 <= sym_dropout < 1.0:
            raise ValueError(f"sym_dropout must be in [0, 1), got {sym_dropout}")
        self.sym_dropout = sym_dropout
        self.n_targets = n_targets
        self.robust = robust
        self.register_buffer("elem_embedding", elements.detach().clone())
        self.register_buffer("wyckoff_embedding", positions.detach().clone())
        fea_len = elem_fea_len + sym_fea_len
        self.embed_elem = nn.Linear(elements.shape[1], elem_fea_len)
        self.embed_sym = nn.Linear(positions.shape[1] + 1, sym_fea_len)  # + the fractional multiplicity
        self.graph = nn.ModuleList(
            MessageLayer(fea_len, elem_heads, elem_gate_hidden, elem_msg_hidden) for _ in range(n_graph)
        )
        self.pool = WeightedAttentionPooling(fea_len, fea_len, cry_heads, cry_gate_hidden, cry_msg_hidden)
        self.output = ResidualNetwork(fea_len, out_hidden, n_targets * (2 if robust else 1))

    @property
    def hparams(self) -> dict[str, Any]:
        """JSON-serialisable constructor arguments, minus the embedding tables."""
        return {k: list(v) if isinstance(v, list) else v for k, v in self._hparams.items()}

    def representations(self, batch: WyckoffBatch) -> Tensor:
        """(n_crystals, fea_len): pooled vectors averaged over each crystal's equivalent representations."""
        dtype = self.embed_elem.weight.dtype
        weights, edge_weights = batch.weights.to(dtype), batch.edge_weights.to(dtype)
        elem = self.embed_elem(self.elem_embedding.index_select(0, batch.elem_idx))
        sym = self.embed_sym(torch.cat(
            [self.wyckoff_embedding.index_select(0, batch.wyckoff_idx), batch.position_weights.to(dtype).unsqueeze(1)],
            dim=1))
        if self.training and self.sym_dropout > 0:
            # whole crystals lose their symmetry channel, so the chemistry path must stand on its own
            keep = torch.rand(batch.n_crystals, device=sym.device) >= self.sym_dropout
            sym = sym * keep[batch.graph_crystal[batch.graph_idx]].to(dtype).unsqueeze(1)
        h = torch.cat([elem, sym], dim=1)
        for layer in self.graph:
            h = layer(h, weights, batch.edge_src, batch.edge_dst, edge_weights)
        per_graph = self.pool(h, weights, batch.graph_idx, batch.n_graphs)
        total = per_graph.new_zeros(batch.n_crystals, per_graph.shape[1]).index_add_(0, batch.graph_crystal,
                                                                                     per_graph)
        counts = torch.bincount(batch.graph_crystal, minlength=batch.n_crystals).to(total.dtype)
        return total / counts.clamp_min(1).unsqueeze(1)

    def forward(self, batch: WyckoffBatch) -> tuple[Tensor, Tensor | None]:
        """(mean, log_sigma), each (n_crystals, n_targets); log_sigma is None unless robust."""
        out = self.output(self.representations(batch))
        if self.robust:
            return out[:, : self.n_targets], out[:, self.n_targets :]
        return out, None
