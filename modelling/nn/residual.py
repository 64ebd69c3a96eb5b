"""Feed-forward output network with skip connections (Roost's 1024-512-256-128-64 head)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


class ResidualBlock(nn.Module):
    """y = relu(W x + b) + P x, with P the identity when widths match and a bias-free projection
    otherwise, so gradients have a short path through a deep, narrowing stack."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_dim, out_dim)
        self.act = nn.ReLU()
        self.skip: nn.Module = (
            nn.Identity() if in_dim == out_dim else nn.Linear(in_dim, out_dim, bias=False)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.fc(x)) + self.skip(x)


class ResidualNetwork(nn.Module):
    """A stack of residual blocks of the given hidden widths, then a linear read-out."""

    def __init__(self, in_dim: int, hidden: Sequence[int], out_dim: int) -> None:
        super().__init__()
        widths = [in_dim, *hidden]
        self.blocks = nn.Sequential(
            *(ResidualBlock(a, b) for a, b in zip(widths[:-1], widths[1:]))
        )
        self.readout = nn.Linear(widths[-1], out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.readout(self.blocks(x))
