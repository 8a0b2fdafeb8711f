"""Contrastive losses on sensor feature changes: masked similarity, Bi, Pt (prototypes) and diversity.

Every function is pure: the caller renders and extracts features once and passes per-stage lists
of maps [B, C_l, H_l, W_l]; all terms are summed over stages and averaged over the batch.
"""
from __future__ import annotations

from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

MASK_MODES = ("l2", "none", "pooled")
COS_MODES = ("squared", "abs")
MASK_EPS = 1e-6
"""Added to the min-max range of a mask and to the mask mass of a similarity."""
COS_EPS = 1e-6
"""Lower bound of a feature vector's norm in a cosine."""
DIVERSITY_EPS = 1e-8


def tensor_sum(terms: Iterable[torch.Tensor]) -> torch.Tensor:
    """sum(terms), the builtin's 0 + t_1 + t_2 + ..., typed as the tensor it is: there is always a term."""
    total = sum(terms)
    assert isinstance(total, torch.Tensor), "nothing to sum"
    return total


def feature_changes(feats_a: list[torch.Tensor], feats_b: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per-stage differences a - b."""
    if len(feats_a) != len(feats_b):
        raise ValueError(f"feature lists of different lengths: {len(feats_a)} and {len(feats_b)} stages")
    return [a - b for a, b in zip(feats_a, feats_b)]


def spatial_mask(change: torch.Tensor) -> torch.Tensor:
    """[..., C, H, W] -> [..., H, W]: L2 norm over channels, min-max normalised per map to [0, 1]."""
    norm = torch.linalg.vector_norm(change, dim=-3)
    flat = norm.flatten(-2)
    low = flat.min(dim=-1, keepdim=True).values
    high = flat.max(dim=-1, keepdim=True).values
    return ((flat - low) / (high - low + MASK_EPS)).view_as(norm)


def _check_modes(mask_mode: str, cos_mode: str) -> None:
    if mask_mode not in MASK_MODES:
        raise ValueError(f"mask mode {mask_mode!r}: expected one of {', '.join(MASK_MODES)}")
    if cos_mode not in COS_MODES:
        raise ValueError(f"cos mode {cos_mode!r}: expected one of {', '.join(COS_MODES)}")


def _similarity(a: torch.Tensor, b: torch.Tensor, mask_mode: str, cos_mode: str, all_pairs: bool) -> torch.Tensor:
    """S(a_i, b_i) -> [B] (all_pairs False) or S(a_i, b_k) -> [B, K] (all_pairs True) for maps [., C, H, W].

    l2:     sum_x f(m_a m_b cos) / (sum_x m_a m_b + 1e-6)
    none:   mean_x f(cos)
    pooled: f(cos(mean_x a, mean_x b))
    with f = square (default) or abs and cos over channels.
    """
    _check_modes(mask_mode, cos_mode)
    pair = "b{0},k{0}->bk{1}" if all_pairs else "b{0},b{0}->b{1}"
    if mask_mode == "pooled":
        a, b = a.mean(dim=(-2, -1)), b.mean(dim=(-2, -1))
        cos = torch.einsum(pair.format("c", ""), F.normalize(a, dim=1, eps=COS_EPS), F.normalize(b, dim=1, eps=COS_EPS))
        return cos.square() if cos_mode == "squared" else cos.abs()
    unit_a, unit_b = F.normalize(a, dim=1, eps=COS_EPS), F.normalize(b, dim=1, eps=COS_EPS)
    cos = _all_pairs_cosines(unit_a, unit_b) if all_pairs else torch.einsum(pair.format("chw", "hw"), unit_a, unit_b)
    if mask_mode == "none":
        values = cos.square() if cos_mode == "squared" else cos.abs()
        return values.mean(dim=(-2, -1))
    if all_pairs:
        mask = spatial_mask(a)[:, None] * spatial_mask(b)[None]  # [B, K, H, W]
    else:
        mask = torch.einsum(pair.format("hw", "hw"), spatial_mask(a), spatial_mask(b))
    masked = mask * cos
    values = masked.square() if cos_mode == "squared" else masked.abs()
    return values.sum(dim=(-2, -1)) / (mask.sum(dim=(-2, -1)) + MASK_EPS)


BROADCAST_COSINE_LIMIT = 2**22
"""Largest B * K * C * H * W for which all-pairs cosines are one broadcast multiply-and-sum (fastest on a CPU);
larger stages take one matmul per position, whose memory stays that of the inputs."""


def _all_pairs_cosines(unit_a: torch.Tensor, unit_b: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] and [K, C, H, W] unit vectors -> [B, K, H, W] cosines at every position. Not an einsum: its
    strided batched matmul copies every position's small matrix on the CPU, which cost Pt's loss half its time."""
    count, others = unit_a.shape[0], unit_b.shape[0]
    if count * unit_b.numel() <= BROADCAST_COSINE_LIMIT:
        return (unit_a[:, None] * unit_b[None]).sum(dim=2)  # [B, K, H, W] from [B, K, C, H, W]
    height, width = unit_a.shape[-2:]
    rows = unit_a.flatten(2).permute(2, 0, 1).contiguous()  # [HW, B, C]
    columns = unit_b.flatten(2).permute(2, 1, 0).contiguous()  # [HW, C, K]
    return torch.matmul(rows, columns).permute(1, 2, 0).reshape(count, others, height, width)


def masked_similarity(a: torch.Tensor, b: torch.Tensor, mask_mode: str = "l2", cos_mode: str = "squared") -> torch.Tensor:
    """Similarity of paired changes a[i], b[i] at one stage, [B, C, H, W] x2 -> [B]."""
    return _similarity(a, b, mask_mode, cos_mode, all_pairs=False)


def similarity_matrix(a: torch.Tensor, b: torch.Tensor, mask_mode: str = "l2", cos_mode: str = "squared") -> torch.Tensor:
    """Similarity of every a[i] with every b[k] at one stage, [B, C, H, W] and [K, C, H, W] -> [B, K]."""
    return _similarity(a, b, mask_mode, cos_mode, all_pairs=True)


def sample_strengths(batch: int, generator: torch.Generator, scale: float = 1.0, min_magnitude: float = 0.0) -> torch.Tensor:
    """Edit strengths s ~ U(-1, 1) * scale, [batch]; |s| below min_magnitude is raised to it, sign kept (0 -> +min)."""
    strengths = (torch.rand(batch, generator=generator) * 2 - 1) * scale
    if min_magnitude <= 0:
        return strengths
    return torch.where(strengths < 0, -1.0, 1.0) * strengths.abs().clamp_min(min_magnitude)


def sample_bi_indices(
    num_directions: int, batch: int, generator: torch.Generator, scale: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The Bi draw per sample: i uniform, j uniform over the other K-1, and independent strengths s, s'."""
    i = torch.randint(num_directions, (batch,), generator=generator)
    j = (i + torch.randint(1, num_directions, (batch,), generator=generator)) % num_directions
    return i, j, sample_strengths(batch, generator, scale), sample_strengths(batch, generator, scale)


def bi_similarities(
    changes_q: list[torch.Tensor],
    changes_p: list[torch.Tensor],
    changes_n: list[torch.Tensor],
    mask_mode: str = "l2",
    cos_mode: str = "squared",
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per stage, S(q, p) and S(q, n), each [B]: the similarity to the positive and to the negative."""
    return [
        (masked_similarity(q, p, mask_mode, cos_mode), masked_similarity(q, n, mask_mode, cos_mode))
        for q, p, n in zip(changes_q, changes_p, changes_n, strict=True)
    ]


def contrast_of(stages: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """sum over stages of [-positive + negative], mean over the batch: the contrast loss of per-stage similarities [B]."""
    return tensor_sum(-positive + negative for positive, negative in stages).mean()


def bi_loss(
    changes_q: list[torch.Tensor],
    changes_p: list[torch.Tensor],
    changes_n: list[torch.Tensor],
    mask_mode: str = "l2",
    cos_mode: str = "squared",
) -> torch.Tensor:
    """sum_l [-S(q, p) + S(q, n)], mean over the batch (q: w1 under s d_i, p: w2 under s d_i, n: w2 under s' d_j)."""
    return contrast_of(bi_similarities(changes_q, changes_p, changes_n, mask_mode, cos_mode))


class Prototypes(nn.Module):
    """K learnable RGB patterns P_k [3, R, R] ~ N(0, 0.01^2), shown as tanh(P_k)."""

    def __init__(self, num_directions: int, resolution: int, seed: int = 0, channels: int = 3, init_std: float = 0.01) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.raw = nn.Parameter(torch.randn(num_directions, channels, resolution, resolution, generator=generator) * init_std)

    def patterns(self, mirror: bool) -> torch.Tensor:
        """tanh(P) [K, 3, R, R], or -flip_horizontal(tanh(P)) when the caller's coin says mirror."""
        images = torch.tanh(self.raw)
        return -images.flip(-1) if mirror else images


def pt_similarities(
    change_feats: list[torch.Tensor],
    prototype_feats: list[torch.Tensor],
    query_index: torch.Tensor,
    mask_mode: str = "l2",
    cos_mode: str = "squared",
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per stage, S(change, Phi_q) and mean_{k != q} S(change, Phi_k), each [B].

    Phi^l [K, C, h, w] are the prototypes' own features, resized bilinearly (align_corners False)
    to each change's H_l x W_l; their masks come from Phi like any change's.
    """
    stages = []
    for change, phi in zip(change_feats, prototype_feats, strict=True):
        if phi.shape[-2:] != change.shape[-2:]:  # a same-size bilinear resize is the identity, exactly
            phi = F.interpolate(phi, size=change.shape[-2:], mode="bilinear", align_corners=False)
        similarities = similarity_matrix(change, phi, mask_mode, cos_mode)  # [B, K]
        own = similarities.gather(1, query_index.view(-1, 1).to(similarities.device))[:, 0]
        stages.append((own, (similarities.sum(dim=1) - own) / (similarities.shape[1] - 1)))
    return stages


def pt_loss(
    change_feats: list[torch.Tensor],
    prototype_feats: list[torch.Tensor],
    query_index: torch.Tensor,
    mask_mode: str = "l2",
    cos_mode: str = "squared",
) -> torch.Tensor:
    """sum_l [-S(change, Phi_q) + mean_{k != q} S(change, Phi_k)], mean over the batch (see pt_similarities)."""
    return contrast_of(pt_similarities(change_feats, prototype_feats, query_index, mask_mode, cos_mode))


def diversity_loss(edits: torch.Tensor) -> torch.Tensor:
    """sum over ordered pairs i != j of cos(vec edit_i, vec edit_j)^2 for edits [K, L, C] (K(K-1) terms)."""
    units = F.normalize(edits.flatten(1), dim=1, eps=DIVERSITY_EPS)
    cos = units @ units.T
    off_diagonal = 1 - torch.eye(cos.shape[0], dtype=cos.dtype, device=cos.device)
    return (cos * off_diagonal).square().sum()
