"""Batch augmentations on tensors (no torchvision): random crop with padding, random-resized crop, horizontal flip,
and RandAugment's geometric and contrast operations for images; token masking for packed text inputs. All draw
from the caller's generator."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_crop_flip(x: torch.Tensor, pad: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Pad by ``pad`` (reflect), crop back to the input size at a random offset per sample, flip half."""
    n, _, h, w = x.shape
    if pad > 0:
        padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
        rows = (dy[:, None] + torch.arange(h)[None, :])[:, None, :, None].expand(n, x.shape[1], h, w + 2 * pad)
        x = padded.gather(2, rows)
        cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, None, :].expand(n, x.shape[1], h, w)
        x = x.gather(3, cols)
    if flip:
        mask = torch.rand(n, generator=generator) < 0.5
        x = torch.where(mask[:, None, None, None], x.flip(3), x)
    return x.contiguous()


def _uniform(n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=generator)


def random_resized_crop(
    x: torch.Tensor,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    flip: bool,
    generator: torch.Generator,
) -> torch.Tensor:
    """Inception-style random-resized crop per sample (area share in ``scale``, aspect ratio in ``ratio``, log-
    uniform), resized back to the input size (bilinear), flipping half when ``flip``: one batched grid_sample."""
    n = x.shape[0]
    area = scale[0] + (scale[1] - scale[0]) * _uniform(n, generator)
    log_r = torch.log(torch.tensor(ratio[0])) + (torch.log(torch.tensor(ratio[1] / ratio[0]))) * _uniform(n, generator)
    r = torch.exp(log_r)
    w = torch.sqrt(area * r).clamp(max=1.0)  # crop sides as shares of the image's
    h = torch.sqrt(area / r).clamp(max=1.0)
    cx = (1 - w) * (2 * _uniform(n, generator) - 1)  # centre, in [-1, 1] coordinates, inside the image
    cy = (1 - h) * (2 * _uniform(n, generator) - 1)
    sx = w * torch.where(_uniform(n, generator) < 0.5, -1.0, 1.0) if flip else w
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sx, cx, h, cy
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


#: RandAugment's operations that are exact on normalised tensors (geometric, and contrast: a blend towards the
#: image's mean is the same in any affine pixel scale); magnitude 0..10 as in the paper (Cubuk et al. 2020)
RANDAUGMENT_OPS = ("identity", "rotate", "shear_x", "shear_y", "translate_x", "translate_y", "contrast")


def randaugment(x: torch.Tensor, ops: int, magnitude: int, generator: torch.Generator) -> torch.Tensor:
    """``ops`` random operations per sample at ``magnitude`` (of 10): rotate up to 30 degrees, shear up to 0.3,
    translate up to 45% of the side, contrast by up to 0.9, each scaled by magnitude/10 with a random sign."""
    n = x.shape[0]
    m = magnitude / 10
    for _ in range(ops):
        pick = torch.randint(0, len(RANDAUGMENT_OPS), (n,), generator=generator)
        sign = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
        theta = torch.eye(2, 3).repeat(n, 1, 1)
        angle = sign * m * math.radians(30)
        is_ = {name: pick == i for i, name in enumerate(RANDAUGMENT_OPS)}
        cos, sin = torch.cos(angle), torch.sin(angle)
        rot = is_["rotate"]
        theta[rot, 0, 0], theta[rot, 0, 1], theta[rot, 1, 0], theta[rot, 1, 1] = cos[rot], -sin[rot], sin[rot], cos[rot]
        theta[is_["shear_x"], 0, 1] = (sign * 0.3 * m)[is_["shear_x"]]
        theta[is_["shear_y"], 1, 0] = (sign * 0.3 * m)[is_["shear_y"]]
        theta[is_["translate_x"], 0, 2] = (sign * 0.9 * m)[is_["translate_x"]]  # 0.45 of the side in [-1, 1]
        theta[is_["translate_y"], 1, 2] = (sign * 0.9 * m)[is_["translate_y"]]
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        c = is_["contrast"]
        if bool(c.any()):
            factor = (1 + sign * 0.9 * m)[c].view(-1, 1, 1, 1)
            mean = x[c].mean((1, 2, 3), keepdim=True)
            x[c] = mean + factor * (x[c] - mean)
    return x


def mask_tokens(
    x: torch.Tensor, share: float, mask_id: int, keep_ids: tuple[int, ...], ids_row: int, attention_row: int | None,
    generator: torch.Generator,
) -> torch.Tensor:  # fmt: skip
    """Packed token inputs ``(N, F, L)`` with each real token (inside the attention mask, not one of ``keep_ids``
    such as [CLS] and [SEP]) replaced by ``mask_id`` with probability ``share``: the masking augmentation of Tang et
    al. 2019 ("Distilling task-specific knowledge from BERT into simple neural networks"), where the teacher's soft
    labels on the masked copy are the student's targets. The other rows (attention mask, token types) are kept."""
    ids = x[:, ids_row]
    eligible = ~torch.isin(ids, torch.tensor(keep_ids, dtype=ids.dtype))
    if attention_row is not None:
        eligible &= x[:, attention_row] != 0
    drawn = torch.rand(ids.shape, generator=generator) < share
    out = x.clone()
    out[:, ids_row] = torch.where(eligible & drawn, torch.full_like(ids, mask_id), ids)
    return out
