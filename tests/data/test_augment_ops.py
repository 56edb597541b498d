"""Training augmentations on tensors: random-resized crop and RandAugment behave as their definitions say."""

from __future__ import annotations

import pytest
import torch

from edgekd.data.augment import RANDAUGMENT_OPS, randaugment, random_resized_crop
from edgekd.stages.distill.stage import DistillConfig


def _images(n: int = 8, size: int = 16) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(0))


def test_a_full_crop_at_aspect_one_is_the_image_and_flip_mirrors_it() -> None:
    x = _images()
    same = random_resized_crop(x, (1.0, 1.0), (1.0, 1.0), False, torch.Generator().manual_seed(1))
    torch.testing.assert_close(same, x, atol=1e-5, rtol=1e-5)
    flipped = random_resized_crop(x, (1.0, 1.0), (1.0, 1.0), True, torch.Generator().manual_seed(1))
    per_sample = [torch.allclose(f, s, atol=1e-5) or torch.allclose(f, s.flip(2), atol=1e-5)
                  for f, s in zip(flipped, x, strict=True)]  # fmt: skip
    assert all(per_sample) and not torch.allclose(flipped, x, atol=1e-5)


def test_a_small_crop_zooms_in_and_is_reproducible() -> None:
    x = torch.arange(32.0).repeat(32, 1)[None, None].repeat(4, 1, 1, 1)  # a horizontal ramp 0..31
    a = random_resized_crop(x, (0.25, 0.25), (1.0, 1.0), False, torch.Generator().manual_seed(3))
    b = random_resized_crop(x, (0.25, 0.25), (1.0, 1.0), False, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == x.shape
    # a crop of half the side, resized back: the ramp's slope doubles (one pixel of output = half a pixel in)
    slope = (a[:, 0, 16, 20] - a[:, 0, 16, 10]) / 10
    torch.testing.assert_close(slope, torch.full((4,), 0.5), atol=1e-4, rtol=0)


def test_randaugment_at_magnitude_zero_is_the_identity_and_contrast_keeps_the_mean() -> None:
    x = _images()
    torch.testing.assert_close(randaugment(x.clone(), 2, 0, torch.Generator().manual_seed(0)), x, atol=1e-5, rtol=0)
    y = randaugment(x.clone(), 3, 9, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and torch.isfinite(y).all() and not torch.allclose(y, x)
    assert "contrast" in RANDAUGMENT_OPS


def test_the_distill_config_picks_a_crop_for_the_input_size() -> None:
    small, large = DistillConfig().recipe(0, "given", input_size=28), DistillConfig().recipe(0, "given", input_size=224)
    assert (small.settings.crop, small.settings.crop_pad) == ("pad", 2)  # 28 px: as before
    assert large.settings.crop == "resized" and large.settings.scale == (0.08, 1.0)
    ra = DistillConfig(augment={"randaugment": {"ops": 2, "magnitude": 7}}).recipe(0, "given")
    assert ra.settings.randaugment == (2, 7) and ra.augment
    assert not DistillConfig(augment=False).recipe(0, "given").augment
    with pytest.raises(ValueError, match=r"scale \[0.5, 0.2\]: need 0 < min <= max <= 1"):
        DistillConfig(augment={"scale": [0.5, 0.2]})


def _tokens() -> torch.Tensor:
    """Packed (input_ids, attention_mask, token_type_ids) of 64 texts of 12..30 tokens padded to 32: [CLS]=2,
    [SEP]=3, [PAD]=0, words 10..99."""
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(64, 3, 32, dtype=torch.long)
    for i in range(64):
        n = int(torch.randint(12, 31, (1,), generator=g))
        x[i, 0, :n] = torch.randint(10, 100, (n,), generator=g)
        x[i, 0, 0], x[i, 0, n - 1] = 2, 3
        x[i, 1, :n] = 1
    return x


def test_token_masking_replaces_only_real_words_at_the_given_share() -> None:
    from edgekd.data.augment import mask_tokens

    x = _tokens()
    out = mask_tokens(x, 0.25, 4, (0, 2, 3, 4), 0, 1, torch.Generator().manual_seed(1))
    changed = out[:, 0] != x[:, 0]
    assert torch.equal(out[:, 1:], x[:, 1:])  # attention mask and token types kept
    assert bool((out[:, 0][changed] == 4).all())  # replaced by the mask id only
    words = (x[:, 1] == 1) & (x[:, 0] >= 10)
    assert not bool((changed & ~words).any())  # [CLS], [SEP] and padding never masked
    share = float(changed.sum() / words.sum())
    assert 0.2 < share < 0.3, share
    again = mask_tokens(x, 0.25, 4, (0, 2, 3, 4), 0, 1, torch.Generator().manual_seed(1))
    assert torch.equal(out, again)  # drawn from the caller's generator only
    assert torch.equal(x, _tokens())  # the input batch is not modified


def test_token_masking_is_accepted_as_text_augmentation_and_refused_for_images() -> None:
    from edgekd.core.errors import ConfigError

    cfg = DistillConfig(augment={"mask": 0.15})
    r = cfg.recipe(0, "given", text=True, token_ids=(4, (0, 2, 3), 0, 1))
    assert r.augment and r.settings.token_mask == 0.15 and r.settings.token_ids == (4, (0, 2, 3), 0, 1)
    assert not DistillConfig(augment=True).recipe(0, "given", text=True).augment  # image settings: not for text
    with pytest.raises(ConfigError, match=r"distill.augment.mask \(0.15\) masks tokens, and this data is images"):
        cfg.recipe(0, "given", text=False)
    with pytest.raises(ConfigError, match="tokenizer has no mask token"):
        cfg.recipe(0, "given", text=True, token_ids=None)
