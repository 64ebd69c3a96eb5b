"""Roost: Representation Learning from Stoichiometry (Goodall & Lee; thesis ch. 4, app. A.1).

A composition is a dense weighted graph of its elements. Node features start as a learned
projection of a fixed element embedding (Matscholar, 200-d) with the fractional weight appended;
message-passing layers of weighted soft attention make them context-aware, attention pooling
turns them into one material vector, and a residual network predicts a mean and (robust) a log
sigma per target. The defaults are the thesis's reference model (about 2.4 M parameters).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from matlake.modelling.batching import Batch
from matlake.modelling.nn.attention import MessageLayer, WeightedAttentionPooling
from matlake.modelling.nn.residual import ResidualNetwork


class Roost(nn.Module):
    """Composition -> property regressor; the constructor arguments are its hyper-parameters.

    ``elem_embedding`` (n_elements, d) is indexed by the element ids of :class:`Batch` and kept
    as a fixed buffer (saved in the state dict, so a stored model carries the exact embedding
    it was trained with); it is not a hyper-parameter and is left out of :attr:`hparams`.
    Rebuild a saved model with ``Roost(elem_embedding, **hparams)`` then ``load_state_dict``.
    """

    def __init__(
        self,
        elem_embedding: Tensor,
        elem_fea_len: int = 64,
        n_graph: int = 3,
        elem_heads: int = 3,
        elem_gate_hidden: int = 256,
        elem_msg_hidden: int = 256,
        cry_heads: int = 3,
        cry_gate_hidden: int = 256,
        cry_msg_hidden: int = 256,
        out_hidden: Sequence[int] = (1024, 512, 256, 128, 64),
        n_targets: int = 1,
        robust: bool = True,
    ) -> None:
        super().__init__()
        embedding = torch.as_tensor(elem_embedding, dtype=torch.get_default_dtype())
        if embedding.ndim != 2:
            raise ValueError(
                f"elem_embedding must be (n_elements, d), got {tuple(embedding.shape)}"
            )
        if elem_fea_len < 2:
            raise ValueError("elem_fea_len must leave room for the projection and the weight")
        self._hparams: dict[str, Any] = {
            "elem_fea_len": elem_fea_len,
            "n_graph": n_graph,
            "elem_heads": elem_heads,
            "elem_gate_hidden": elem_gate_hidden,
            "elem_msg_hidden": elem_msg_hidden,
            "cry_heads": cry_heads,
            "cry_gate_hidden": cry_gate_hidden,
            "cry_msg_hidden": cry_msg_hidden,
            "out_hidden": [int(w) for w in out_hidden],
            "n_targets": n_targets,
            "robust": robust,
        }
        self.n_targets = n_targets
        self.robust = robust
        self.register_buffer("elem_embedding", embedding.detach().clone())
        # the last feature slot holds the fractional weight, so the projection is one short
        self.embed = nn.Linear(embedding.shape[1], elem_fea_len - 1)
        self.graph = nn.ModuleList(
            MessageLayer(elem_fea_len, elem_heads, elem_gate_hidden, elem_msg_hidden)
            for _ in range(n_graph)
        )
        self.pool = WeightedAttentionPooling(
            elem_fea_len, elem_fea_len, cry_heads, cry_gate_hidden, cry_msg_hidden
        )
        self.output = ResidualNetwork(
            elem_fea_len, out_hidden, n_targets * (2 if robust else 1)
        )

    @property
    def hparams(self) -> dict[str, Any]:
        """JSON-serialisable constructor arguments, minus the embedding tensor."""
        return {k: list(v) if isinstance(v, list) else v for k, v in self._hparams.items()}

    def forward(self, batch: Batch) -> tuple[Tensor, Tensor | None]:
        """(mean, log_sigma), each (n_crystals, n_targets); log_sigma is None unless robust."""
        weights = batch.weights.to(self.embed.weight.dtype)
        projected = self.embed(self.elem_embedding.index_select(0, batch.elem_idx))
        h = torch.cat([projected, weights.unsqueeze(1)], dim=1)
        for layer in self.graph:
            h = layer(h, weights, batch.edge_src, batch.edge_dst)
        material = self.pool(h, weights, batch.crystal_idx, batch.n_crystals)
        out = self.output(material)
        if self.robust:
            return out[:, : self.n_targets], out[:, self.n_targets :]
        return out, None
