"""Batch-level copy-paste: what is pasted, where the mask changes, determinism, bad input."""

import pytest
import torch

from seglib.data import IGNORE_INDEX
from seglib.data.mixing import copy_paste, mixing_generator


def _batch(b=4, size=32):
    torch.manual_seed(0)
    images = torch.randn(b, 3, size, size)
    masks = torch.zeros(b, 1, size, size)
    for i in range(b):  # a different square pet in each image
        masks[i, :, 4 + 2 * i : 14 + 2 * i, 6 + i : 20 + i] = 1
    return images, masks


def test_p0_and_single_image_batches_are_untouched():
    images, masks = _batch()
    out = copy_paste(images, masks, 0.0, mixing_generator(0, 0))
    assert out[0] is images and out[1] is masks
    one = copy_paste(images[:1], masks[:1], 1.0, mixing_generator(0, 0))
    assert torch.equal(one[0], images[:1]) and torch.equal(one[1], masks[:1])


def test_pasted_pixels_come_from_another_image_and_are_pet():
    images, masks = _batch()
    masks[0, :, 0, :] = IGNORE_INDEX  # an ignored row stays ignored unless a pet lands on it
    out_images, out_masks = copy_paste(images, masks, 1.0, mixing_generator(3, 7), scale=(1.0, 1.0))
    changed = (out_images != images).any(dim=1, keepdim=True)
    assert changed.any(dim=(1, 2, 3)).all()  # p = 1: every image received a pet
    assert (out_masks[changed] == 1).all()  # where the image changed, the mask says pet
    kept = ~changed & (out_masks != 1)
    assert torch.equal(out_masks[kept], masks[kept])  # elsewhere the old labels, the ignore value included
    assert ((out_masks == 1) | ~(masks == 1)).all()  # the image's own pet stays pet: the mask is a union
    # At scale 1 the pet stays where it was, flipped or not: the new mask is the union of the image's
    # own pet and another image's pet, mirrored or as it was.
    pets = (masks == 1).float()
    for i in range(4):
        unions = [
            torch.maximum(pets[i], pets[j].flip(-1) if f else pets[j])
            for j in range(4)
            if j != i
            for f in (False, True)
        ]
        own = torch.where(masks[i] == IGNORE_INDEX, 0.0, out_masks[i])
        assert any(torch.equal(own, u) for u in unions), i


def test_a_pasted_pet_is_scaled_by_the_factor_drawn():
    images, masks = torch.randn(2, 3, 48, 48), torch.zeros(2, 1, 48, 48)
    masks[1, :, 8:24, 10:26] = 1  # a 16 x 16 pet in the second image only
    for seed in range(3):
        _, out = copy_paste(images, masks, 1.0, mixing_generator(seed, 0), scale=(0.5, 0.5))
        assert int((out[0] == 1).sum()) == 8 * 8  # half the side: a quarter of the pet's pixels
        assert torch.equal(out[1], masks[1])  # the first image has no pet to give


def test_pure_function_of_seed_and_step():
    images, masks = _batch()
    a = copy_paste(images, masks, 0.5, mixing_generator(42, 10))
    b = copy_paste(images, masks, 0.5, mixing_generator(42, 10))
    c = copy_paste(images, masks, 0.5, mixing_generator(42, 11))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])
    assert mixing_generator(42, 10, rank=0).initial_seed() != mixing_generator(42, 10, rank=1).initial_seed()


def test_images_without_pets_paste_nothing_and_layout_is_kept():
    images, _ = _batch()
    masks = torch.zeros(4, 1, 32, 32)
    cl = images.contiguous(memory_format=torch.channels_last)
    out_images, out_masks = copy_paste(cl, masks, 1.0, mixing_generator(0, 0))
    assert torch.equal(out_images, images) and torch.equal(out_masks, masks)
    assert out_images.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize(
    ("images", "masks", "p", "message"),
    [
        (torch.zeros(2, 3, 8, 8), torch.zeros(2, 8, 8), 0.5, r"Bx3xHxW images and Bx1xHxW masks"),
        (torch.zeros(2, 3, 8, 8), torch.zeros(3, 1, 8, 8), 0.5, r"got \(2, 3, 8, 8\) and \(3, 1, 8, 8\)"),
        (torch.zeros(2, 3, 8, 8), torch.zeros(2, 1, 8, 8), 1.5, r"probability must be in \[0, 1\], got 1.5"),
    ],
)
def test_bad_input_is_named(images, masks, p, message):
    with pytest.raises(ValueError, match=message):
        copy_paste(images, masks, p, mixing_generator(0, 0))
