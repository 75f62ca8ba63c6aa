import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seglib.data import IGNORE_INDEX
from seglib.metrics import (
    IGNORE_INDEX as METRICS_IGNORE,
)
from seglib.metrics import (
    confusion_counts,
    dataset_dice,
    dice_per_image,
    dice_score,
    foreground,
    iou_per_image,
    iou_score,
    segment_counts,
)

BIG = 20.0  # a logit that is surely positive after the sigmoid


def logits_of(mask: torch.Tensor) -> torch.Tensor:
    return torch.where(mask == 1, BIG, -BIG)


def test_known_values():
    a = torch.tensor([[[1.0, 1.0, 0.0, 0.0]]])
    half = torch.tensor([[[1.0, 0.0, 0.0, 0.0]]])  # |A∩B| = 1, |A| + |B| = 3
    assert dice_score(logits_of(a), a).item() == pytest.approx(1.0)
    assert dice_score(logits_of(a), 1 - a).item() == pytest.approx(0.0, abs=1e-6)
    assert dice_score(logits_of(half), a).item() == pytest.approx(2 / 3)
    assert iou_score(logits_of(half), a).item() == pytest.approx(1 / 2)
    empty = torch.zeros(1, 1, 4)
    assert dice_score(logits_of(empty), empty).item() == 1.0  # both empty: documented as 1
    assert dice_score(logits_of(a), empty).item() == pytest.approx(0.0, abs=1e-6)


def test_threshold_applies_to_the_sigmoid():
    target = torch.ones(1, 1, 2)
    logits = torch.tensor([[[0.1, -0.1]]])  # sigmoid 0.525 and 0.475
    assert dice_score(logits, target, threshold=0.5).item() == pytest.approx(2 / 3)
    assert dice_score(logits, target, threshold=0.6).item() == pytest.approx(0.0, abs=1e-6)


def test_the_threshold_is_exact_where_a_float32_sigmoid_is_not():
    # sigmoid(5e-8) is 0.5 in float32, and 1 - 1e-8 is 1.0: a positive logit must still pass 0.5, and
    # a logit of 30 (p = 1 - 9e-14) the threshold 1 - 1e-8, as they do for sigmoid in exact arithmetic
    small, big = torch.tensor([[5e-8, -5e-8]]), torch.tensor([[30.0, 18.0]])
    assert foreground(small).tolist() == [[True, False]]
    assert foreground(big, 1 - 1e-8).tolist() == [[True, False]]
    tp, fp, fn = confusion_counts(small, torch.tensor([[1.0, 0.0]]))
    assert (tp.item(), fp.item(), fn.item()) == (1, 0, 0)
    assert foreground(torch.tensor([0.0, 1e-30]), 0.5).tolist() == [False, True]  # exported: logits > 0
    for bad in (0, 1, 1.5, -0.1):
        with pytest.raises(ValueError, match=f"threshold={bad!r}; give a probability in"):
            foreground(small, bad)


def test_ignore_region_is_excluded():
    target = torch.tensor([[[1.0, 0.0, IGNORE_INDEX, IGNORE_INDEX]]])
    pred = torch.tensor([[[1.0, 0.0, 1.0, 0.0]]])  # wrong only where ignored
    assert dice_score(logits_of(pred), target).item() == pytest.approx(1.0)
    assert METRICS_IGNORE == IGNORE_INDEX


def test_per_image_mean_versus_dataset_level():
    target = torch.stack([torch.ones(1, 2, 50), torch.ones(1, 2, 50)])  # (2, 1, 2, 50)
    pred = target.clone()
    pred[1, 0, 0] = 0  # second image: half its pixels found
    per_image = dice_per_image(logits_of(pred), target)
    assert per_image.tolist() == pytest.approx([1.0, 2 / 3])
    assert dice_score(logits_of(pred), target).item() == pytest.approx(5 / 6)
    tp, fp, fn = confusion_counts(logits_of(pred), target)
    assert dataset_dice(tp, fp, fn).item() == pytest.approx(2 * 150 / (2 * 150 + 50))


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="same shape"):
        dice_score(torch.zeros(1, 1, 4, 4), torch.zeros(1, 4, 4))


masks = st.lists(st.integers(0, 1), min_size=1, max_size=64)


@settings(max_examples=200, deadline=None)
@given(masks, masks)
def test_properties(a_bits, b_bits):
    n = min(len(a_bits), len(b_bits))
    a = torch.tensor(a_bits[:n], dtype=torch.float32).view(1, 1, n)
    b = torch.tensor(b_bits[:n], dtype=torch.float32).view(1, 1, n)
    for f in (dice_per_image, iou_per_image):
        v = f(logits_of(a), b).item()
        assert 0.0 <= v <= 1.0 + 1e-6
        assert v == pytest.approx(f(logits_of(b), a).item())  # symmetric
        assert f(logits_of(a), a).item() == pytest.approx(1.0)
    # monotone in overlap: turning a false negative into a true positive never lowers the score
    missed = ((b == 1) & (a == 0)).nonzero()
    if len(missed):
        better = a.clone()
        better[tuple(missed[0])] = 1
        assert dice_per_image(logits_of(better), b).item() >= dice_per_image(logits_of(a), b).item() - 1e-7
        assert iou_per_image(logits_of(better), b).item() >= iou_per_image(logits_of(a), b).item() - 1e-7
    # Dice and IoU agree: D = 2J / (1 + J)
    j = iou_per_image(logits_of(a), b).item()
    assert dice_per_image(logits_of(a), b).item() == pytest.approx(2 * j / (1 + j), abs=1e-5)


@pytest.mark.parametrize("ignore_index", [METRICS_IGNORE, None])
def test_segment_counts_equal_each_images_own_counts(ignore_index):
    torch.manual_seed(0)
    shapes = [(37, 50), (1, 1), (120, 90), (3, 200)]
    logits = [torch.randn(*s) * 3 for s in shapes]
    targets = [torch.randint(0, 3, s, dtype=torch.uint8) for s in shapes]
    for t in targets:
        t[t == 2] = METRICS_IGNORE
    counts = segment_counts(
        torch.cat([x.flatten() for x in logits]),
        torch.cat([t.flatten() for t in targets]),
        [x.numel() for x in logits],
        threshold=0.3,
        ignore_index=ignore_index,
    )
    assert counts.shape == (4, 4) and counts.dtype == torch.int64
    for x, t, got in zip(logits, targets, counts, strict=True):
        tp, fp, fn = confusion_counts(x[None], t[None], 0.3, ignore_index=ignore_index)
        valid = (t != METRICS_IGNORE).sum() if ignore_index is not None else t.numel()
        assert got.tolist() == [tp.item(), fp.item(), fn.item(), int(valid)]


def test_segment_counts_lengths_must_cover_the_values():
    with pytest.raises(ValueError, match="sum of lengths"):
        segment_counts(torch.zeros(10), torch.zeros(10, dtype=torch.uint8), [4, 5])
