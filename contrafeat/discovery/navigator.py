"""The navigator: K edits of W+, each a direction in W (outer) an attention over the L layers."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from contrafeat.checks import check_shape
from contrafeat.gan.interface import rms_normalise

DIRECTION_MODES = ("learned", "fixed")
ATTENTION_MODES = ("softmax", "none")


def gaussian_kernel1d(size: int = 3, sigma: float = 1.0) -> torch.Tensor:
    """A centred 1-D Gaussian of `size` taps, normalised to sum 1 (size 3, sigma 1: ~[0.274, 0.452, 0.274])."""
    positions = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    kernel = torch.exp(-positions.square() / (2 * sigma**2))
    return (kernel / kernel.sum()).float()


class DirectionBranch(nn.Module):
    """K directions in W [K, C], each RMS-normalised.

    `learned`: d_i = rms_normalise(V_k u_i) with trainable u [K, k] ~ N(0, 1) and V_k the first k
    columns of `basis`. `fixed`: d_i = rms_normalise(basis[:, i]), no parameters (GANSpace with the
    PCA basis, SeFa with its eigenvectors).
    """

    subspace: torch.Tensor  # [C, k], learned mode
    vectors: torch.Tensor  # [K, C], fixed mode

    def __init__(
        self,
        basis: torch.Tensor,
        num_directions: int,
        mode: str = "learned",
        subspace_dim: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if mode not in DIRECTION_MODES:
            raise ValueError(f"direction mode {mode!r}: expected one of {', '.join(DIRECTION_MODES)}")
        self.mode = mode
        available = basis.shape[1]
        if mode == "learned":
            subspace_dim = available if subspace_dim is None else subspace_dim
            if not 1 <= subspace_dim <= available:
                raise ValueError(f"subspace_dim {subspace_dim}: expected 1..{available} (the basis has {available} columns)")
            self.register_buffer("subspace", basis[:, :subspace_dim].detach().float().clone())
            self.coefficients = nn.Parameter(torch.randn(num_directions, subspace_dim, generator=generator))
        else:
            if num_directions > available:
                raise ValueError(f"num_directions {num_directions}: a fixed basis offers only {available} directions")
            self.register_buffer("vectors", rms_normalise(basis[:, :num_directions].T.detach().float().clone()))

    def forward(self) -> torch.Tensor:
        if self.mode == "learned":
            return rms_normalise(self.coefficients @ self.subspace.T)
        return self.vectors


class AttentionBranch(nn.Module):
    """Per-direction weights over the L layers of W+ [K, L].

    `softmax`: free logits [K, A] ~ N(0, 1) over the first A = attended_layers layers, softmax,
    zeros appended for the layers above A, then a depthwise Gaussian filter (size 3, sigma 1) along
    the layers with reflect padding. `none`: 1/A on each of the first A layers, zeros above.
    """

    kernel: torch.Tensor  # [size], softmax mode
    uniform: torch.Tensor  # [K, L], none mode

    def __init__(
        self,
        num_directions: int,
        num_ws: int,
        mode: str = "softmax",
        attended_layers: int | None = None,
        generator: torch.Generator | None = None,
        kernel_size: int = 3,
        kernel_sigma: float = 1.0,
    ) -> None:
        super().__init__()
        if mode not in ATTENTION_MODES:
            raise ValueError(f"attention mode {mode!r}: expected one of {', '.join(ATTENTION_MODES)}")
        attended_layers = num_ws if attended_layers is None else attended_layers
        if not 1 <= attended_layers <= num_ws:
            raise ValueError(f"attended_layers {attended_layers}: expected 1..{num_ws} (the generator's num_ws)")
        self.mode, self.num_ws, self.attended_layers = mode, num_ws, attended_layers
        if mode == "softmax":
            self.logits = nn.Parameter(torch.randn(num_directions, attended_layers, generator=generator))
            self.register_buffer("kernel", gaussian_kernel1d(kernel_size, kernel_sigma))
        else:
            uniform = torch.full((num_directions, attended_layers), 1.0 / attended_layers)
            self.register_buffer("uniform", F.pad(uniform, (0, num_ws - attended_layers)))

    def forward(self) -> torch.Tensor:
        if self.mode == "none":
            return self.uniform
        weights = F.pad(torch.softmax(self.logits, dim=1), (0, self.num_ws - self.attended_layers))
        half = (self.kernel.numel() - 1) // 2
        padded = F.pad(weights[:, None, :], (half, half), mode="reflect")
        return F.conv1d(padded, self.kernel.view(1, 1, -1))[:, 0, :]


class Navigator(nn.Module):
    """Both branches together: directions [K, C], attention [K, L], edits [K, L, C] and applying them.

    `basis` [C, n] holds candidate axes as columns: the PCA axes of W for `learned` (first
    `subspace_dim` columns) and for GANSpace (`fixed`), SeFa's eigenvectors for SeFa (`fixed`).
    One generator seeded with `seed` draws the direction coefficients, then the attention logits.
    """

    def __init__(
        self,
        num_directions: int,
        num_ws: int,
        w_dim: int,
        basis: torch.Tensor,
        subspace_dim: int | None = None,
        direction_mode: str = "learned",
        attention_mode: str = "softmax",
        seed: int = 0,
        attended_layers: int | None = None,
    ) -> None:
        super().__init__()
        check_shape(basis, [w_dim, "n"], "basis")
        self.num_directions, self.num_ws, self.w_dim = num_directions, num_ws, w_dim
        generator = torch.Generator().manual_seed(seed)
        self.direction_branch = DirectionBranch(basis, num_directions, direction_mode, subspace_dim, generator)
        self.attention_branch = AttentionBranch(num_directions, num_ws, attention_mode, attended_layers, generator)

    def directions(self) -> torch.Tensor:
        """[K, C], each row RMS 1."""
        return self.direction_branch()

    def attention(self) -> torch.Tensor:
        """[K, L] layer weights."""
        return self.attention_branch()

    def edits(self) -> torch.Tensor:
        """[K, L, C]: attention (outer) direction."""
        return self.attention()[:, :, None] * self.directions()[:, None, :]

    def apply_to(self, ws: torch.Tensor, index: torch.Tensor, strength: torch.Tensor | float) -> torch.Tensor:
        """ws [B, L, C] + strength[b] * edits[index[b]] for each sample b."""
        index = torch.as_tensor(index, device=ws.device).reshape(-1)
        strength = torch.as_tensor(strength, dtype=ws.dtype, device=ws.device).reshape(-1, 1, 1)
        selected = self.attention()[index, :, None] * self.directions()[index, None, :]
        return ws + strength * selected.to(ws.dtype)
