"""The mask viewer's logic, without a browser: change a widget, the picture changes."""

import base64
import gc
import io
import weakref
from datetime import UTC, datetime

import ipywidgets
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from seglib.data import OxfordPetDataset
from seglib.viewer import MaskViewer


class Ramp(nn.Module):
    """Logits rising from left to right: the predicted mask moves with the threshold."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.shape[-1]
        ramp = torch.linspace(-4, 4, w).expand(x.shape[0], 1, x.shape[-2], w)
        return ramp.contiguous()


@pytest.fixture
def ds(synthetic_root):
    return OxfordPetDataset(synthetic_root, "test", image_size=64, limit=6)


def png(viewer: MaskViewer) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(viewer.image.value)))


def test_dataset_alone_shows_truth(ds):
    v = MaskViewer(ds)
    assert v.show_pred.disabled and v.threshold.disabled and v.upload.disabled
    first = v.render()
    assert first.shape == (*ds.original_size(0), 3)
    assert "truth green" in v.status.value and "prediction" not in v.status.value  # no model: no such layer
    v.show_truth.value = False
    assert np.array_equal(v.render(), ds.load_image(0))  # nothing drawn over the image
    assert "truth green" not in v.status.value
    v.show_truth.value = True
    v.index.value = 1
    assert v.current == 1 and ds.names[1] in v.status.value
    v.next_button.click()
    assert v.index.value == 2
    v.prev_button.click()
    v.prev_button.click()
    v.prev_button.click()  # stops at the first image
    assert v.index.value == 0 and np.array_equal(v.render(), first)
    with pytest.raises(ValueError, match="without a model"):
        v.dice(0)


def test_sliders_and_toggles_change_the_picture(ds):
    v = MaskViewer(ds, model=Ramp(), image_size=64)
    before = png(v)
    v.threshold.value = 0.8
    after = png(v)
    assert not np.array_equal(before, after)  # live re-threshold
    assert "threshold 0.80 (fp32)" in v.status.value  # the precision its Dice is computed in
    # truth and prediction on (the default): compared, pixel by pixel
    assert "<small>correct orange, false positives red, false negatives blue</small>" in v.status.value
    low, high = v.dice(0), None
    v.threshold.value = 0.2
    high = v.dice(0)
    assert low != high
    v.opacity.value = 0.0
    assert np.array_equal(v.render(), ds.load_image(0))
    v.opacity.value = 0.5
    compared = v.render()
    v.show_truth.value = False
    assert not np.array_equal(compared, v.render())
    assert "<small>prediction orange</small>" in v.status.value
    v.show_errors.value = True
    assert np.array_equal(compared, v.render())  # prediction and errors: the same comparison
    v.index.value = 3
    assert not np.array_equal(after, png(v))


def test_name_box_and_sort_by_dice(ds):
    v = MaskViewer(ds, model=Ramp(), image_size=64)
    v.name_box.value = ds.names[4]
    assert v.current == 4
    v.step(-1)
    v.name_box.value = ds.names[4]  # the same name again, after moving away: it jumped nowhere
    assert v.current == 4
    assert not v.jump_to("no_such_pet_1") and "no image named" in v.status.value
    v.sort.value = "dice ascending"
    dice = [v.dice(i) for i in v.order]
    assert dice == sorted(dice) and v.current == 4  # the image on show stays
    v.index.value = 0
    assert v.dice(v.current) == min(dice)
    v.index.value = 3
    shown, before = v.current, list(v.order)
    v.threshold.value = 0.95  # the Dice moves with the threshold: the order follows
    dice = [v.dice(i) for i in v.order]
    assert dice == sorted(dice) and v.order != before and v.current == shown


def test_sort_from_an_evaluation_table(ds):
    table = {"name": ds.names, "dice": [0.9, 0.1, 0.5, 0.7, 0.3, 0.8]}
    import pandas as pd

    v = MaskViewer(ds, table=pd.DataFrame(table))
    v.sort.value = "dice ascending"
    assert [ds.names[i] for i in v.order] == [ds.names[i] for i in (1, 4, 2, 3, 5, 0)]
    assert "Dice 0.9000 (from the table)" in v.status.value  # the image on show stays
    worst_first = MaskViewer(ds, table=pd.DataFrame(table), sort="dice ascending")
    assert worst_first.current == 1 and "Dice 0.1000 (from the table)" in worst_first.status.value
    # an image the table lacks (left out as unreadable) goes last, the others stay in Dice order
    partial = pd.DataFrame(table).drop(index=2)
    v = MaskViewer(ds, table=partial, sort="dice ascending")
    assert [ds.names[i] for i in v.order] == [ds.names[i] for i in (1, 4, 3, 5, 0, 2)]
    v.index.value = 5
    assert "not in the table" in v.status.value
    blank = pd.DataFrame(table).assign(dice=lambda t: t.dice.where(t.index != 0))  # its row, without a Dice
    assert "no Dice in the table" in MaskViewer(ds, table=blank).status.value
    with pytest.raises(ValueError, match="Dice needs a model or a table"):
        MaskViewer(ds, sort="dice ascending")
    with pytest.raises(ValueError, match="columns 'name' and 'dice'"):
        MaskViewer(ds, table=pd.DataFrame({"name": ds.names}))
    both = pd.concat([pd.DataFrame(table).assign(model=m) for m in ("unet", "resnet34_unet")])
    with pytest.raises(
        ValueError, match=r"more than one row for .* \(two models' rows\?\); pass one model's"
    ):
        MaskViewer(ds, table=both)  # the last model's Dice was shown, unsaid


def test_a_threshold_beyond_the_sliders_steps_is_kept(ds):
    assert MaskViewer(ds, threshold=0.97).threshold.value == 0.97  # it was set to 0.95, unsaid
    with pytest.raises(ValueError, match=r"threshold=1.5; give a probability in \(0, 1\)"):
        MaskViewer(ds, threshold=1.5)


def test_upload_segments_your_photo(ds):
    v = MaskViewer(ds, model=Ramp(), image_size=64)
    photo = np.full((90, 120, 3), 128, np.uint8)
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, format="JPEG")
    v.upload.value = (
        {
            "name": "my_cat.jpg",
            "type": "image/jpeg",
            "size": buf.tell(),
            "content": memoryview(buf.getvalue()),
            "last_modified": datetime.now(UTC),
        },
    )
    shown = v.render()
    assert shown.shape == (90, 120, 3) and "my_cat.jpg" in v.status.value
    assert not np.array_equal(shown[:, :10], shown[:, -10:])  # left: background, right: pet
    assert v.upload_prediction.name == "my_cat"
    # A file that is no image: the status line says so (a callback's error would reach no one), and the
    # photo before it is no longer on show nor saved as its prediction.
    v.upload.value = ({**v.upload.value[0], "name": "IMG_1.HEIC", "content": memoryview(b"ftypheic")},)
    assert "cannot segment IMG_1.HEIC</b>: cannot identify image file" in v.status.value
    assert v.upload_prediction is None and v.render().shape == (*ds.original_size(v.current), 3)


def test_an_image_that_cannot_be_read_is_named_and_the_others_shown(synthetic_root, tmp_path):
    import shutil

    root = shutil.copytree(synthetic_root, tmp_path / "copy")
    ds = OxfordPetDataset(root, "test", image_size=64, limit=6, on_corrupt="skip")
    damaged = ds.image_path(ds.names[1])
    damaged.write_bytes(damaged.read_bytes()[:300])
    v = MaskViewer(ds)
    v.index.value = 1  # a widget callback: its exception would reach no one, so the status line says it
    assert f"cannot show {ds.names[1]}</b>: " in v.status.value and "truncated" in v.status.value
    v.index.value = 2
    assert ds.names[2] in v.status.value and png(v).shape[2] in (3, 4)
    worst_first = MaskViewer(ds, model=Ramp(), sort="dice ascending")  # the damaged image sorts last
    assert worst_first.order[-1] == 1 and sorted(worst_first.order) == list(range(6))


class Everywhere(nn.Module):
    """Every pixel predicted as pet."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], 1, *x.shape[-2:]), 5.0)


def test_errors_leave_the_ignored_border_alone(synthetic_root):
    """With border="ignore" the trimap's unsure band is no error either way: not painted red."""
    unsure = OxfordPetDataset(synthetic_root, "test", image_size=64, limit=2, border="ignore")
    v = MaskViewer(unsure, model=Everywhere(), image_size=64)
    v.show_truth.value, v.show_pred.value, v.show_errors.value = False, False, True
    v.opacity.value = 1.0
    truth, image, shown = unsure.load_mask(0), unsure.load_image(0), v.render()
    band, background = truth == 255, truth == 0
    assert band.any() and background.any()
    assert np.array_equal(shown[band], image[band])  # untouched
    assert (shown[background] == (204, 51, 17)).all()  # false positives: red


def test_the_predictions_kept_are_bounded_and_give_the_same_dice_when_made_again(ds):
    """Every image visited kept its full-size logits: about 1.2 GB after twelve 48-megapixel photos."""
    one = 4 * int(np.prod(ds.original_size(0)))  # bytes of one image's float32 logits, about the others'
    v = MaskViewer(ds, model=Ramp(), image_size=64, cache_mb=2.5 * one / 2**20)
    first = v.dice(0)
    for _ in range(len(ds) - 1):
        v.step(1)
        assert v.cached_bytes <= 2.5 * one * 1.5  # the synthetic images differ a little in size
    assert v.cached_bytes < (len(ds) - 2) * one  # not all of them
    assert v.dice(0) == first  # made again, the same
    small = MaskViewer(ds, model=Ramp(), image_size=64, cache_mb=0)
    small.step(1)
    assert small.cached_bytes == 4 * int(np.prod(ds.original_size(small.current)))  # the one on show


class Counted(Ramp):
    """Ramp, counting the images it is run on."""

    def __init__(self):
        super().__init__()
        self.runs = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.runs += 1
        return super().forward(x)


def test_the_predictions_kept_are_those_of_the_images_seen_last(ds):
    """Going back to the image seen a moment ago keeps its prediction: the one seen longest ago goes."""
    model = Counted()
    v = MaskViewer(ds, model=model, image_size=64)
    sizes = [4 * int(np.prod(ds.original_size(i))) for i in range(3)]
    v.cache_mb = (sum(sizes) - 1) / 2**20  # any two images' logits, not all three
    v.logits(0), v.logits(1), v.logits(0)  # 0 seen last
    v.logits(2)  # one goes: 1, seen longest ago
    runs = model.runs
    v.logits(0)
    assert model.runs == runs  # kept
    v.logits(1)
    assert model.runs == runs + 1  # made again
    v.close()


def test_truth_and_prediction_together_paint_each_pixel_once_by_kind(ds):
    """Stacked, the truth's green under the prediction's orange made right and wrong pixels one olive for
    red-green colour blindness (CIEDE2000 2.7 after simulating deuteranopia): each pixel is painted once."""
    v = MaskViewer(ds, model=Ramp(), image_size=64)
    v.opacity.value = 1.0
    truth, image = ds.load_mask(0), ds.load_image(0)
    pred = v.logits(0).numpy() > 0
    shown = v.render()
    kinds = {
        (255, 170, 0): pred & (truth == 1),  # correct: the prediction's orange
        (204, 51, 17): pred & (truth == 0),  # false positives
        (0, 114, 178): ~pred & (truth == 1),  # false negatives
    }
    for colour, where in kinds.items():
        assert where.any() and (shown[where] == colour).all(), colour
    background = ~pred & (truth == 0)
    assert np.array_equal(shown[background], image[background])
    v.show_pred.value = False  # the truth alone: green
    assert (v.render()[truth == 1] == (40, 200, 60)).all() and "<small>truth green</small>" in v.status.value


def test_the_errors_beside_the_truth_alone_paint_the_right_pixels_the_legend_names(ds):
    """Errors on with the truth shown and the prediction not: the legend says "correct orange"."""
    v = MaskViewer(ds, model=Ramp(), image_size=64)
    v.opacity.value = 1.0
    v.show_pred.value, v.show_errors.value = False, True
    truth, pred = ds.load_mask(0), v.logits(0).numpy() > 0
    right = pred & (truth == 1)
    assert right.any() and (v.render()[right] == (255, 170, 0)).all()
    assert "<small>correct orange, false positives red, false negatives blue</small>" in v.status.value
    v.close()


def test_a_large_image_is_drawn_from_every_kth_pixel_as_it_would_look_shrunk(ds):
    """A 48-megapixel photo was read and blended at full size at each move of a slider (8 s a move here);
    it is drawn from every k-th pixel (the photo box-filtered) at a little over the widget's size."""
    v = MaskViewer(ds, model=Ramp(), image_size=64, max_side=100)  # the images: 5 times that or so
    shown = png(v)
    assert max(shown.shape[:2]) == 100
    whole = Image.fromarray(v.render()).resize(shown.shape[1::-1], Image.BILINEAR)
    assert np.abs(shown.astype(int) - np.asarray(whole).astype(int)).mean() < 6  # the same picture
    v.threshold.value = 0.7  # the pair kept for the image on show: the same Dice as read anew
    assert v.dice(v.current) == MaskViewer(ds, model=Ramp(), image_size=64, threshold=0.7).dice(v.current)


def test_a_closed_viewer_lets_go_of_its_widgets_and_predictions(ds):
    """ipywidgets keeps every open widget, and through their callbacks the viewer: each run of a notebook's
    viewer cell kept the last viewer and its logits for the kernel's life."""
    kept = MaskViewer(ds, model=Ramp(), image_size=64)
    kept_ref = weakref.ref(kept)
    del kept
    gc.collect()
    assert kept_ref() is not None  # what close() is for
    open_before = len(ipywidgets.widgets.widget._instances)
    v = MaskViewer(ds, model=Ramp(), image_size=64)
    v.step(1)
    assert v.cached_bytes > 0
    ref = weakref.ref(v)
    v.close()
    assert v.cached_bytes == 0 and v.widget.comm is None and v.threshold.comm is None
    assert len(ipywidgets.widgets.widget._instances) == open_before  # layouts and styles too
    del v
    gc.collect()
    assert ref() is None
    again = MaskViewer(ds, image_size=64, replaces=kept_ref())  # a notebook cell run again
    assert kept_ref() is None or kept_ref().widget.comm is None
    gc.collect()
    assert kept_ref() is None and again.widget.comm is not None
    MaskViewer(ds, image_size=64, replaces="not a viewer").close()  # ignored


def test_names_are_shown_as_text_not_as_html(tmp_path):
    """A file name is text: the status line put it into the widget's HTML as it was, so a data set's
    "<img src=x onerror=...>.jpg" (a legal name) was markup in the notebook's page."""
    from seglib.data import FolderDataset
    from seglib.data.demo_folder import make_synthetic_folder

    root = make_synthetic_folder(tmp_path / "a<b>&c", n=4)
    odd = "<img src=x onerror=alert(1)>"
    (root / "images" / "photo_000.jpg").rename(root / "images" / f"{odd}.jpg")
    (root / "masks" / "photo_000.png").rename(root / "masks" / f"{odd}.png")
    ds = FolderDataset(root, "trainval")
    v = MaskViewer(ds)
    assert v.jump_to(odd)
    assert "&lt;img src=x onerror=alert(1)&gt;" in v.status.value and "<img" not in v.status.value
    assert "a&lt;b&gt;&amp;c" in v.status.value  # the folder's name, as the breed and species
    v.close()


def test_a_page_without_the_kernel_shows_the_picture_on_show(ds):
    """GitHub, nbviewer and an HTML export cannot run the widget: the output also holds the picture."""
    from IPython.core.formatters import format_display_data

    v = MaskViewer(ds, image_size=64)
    v.step(2)
    data, _ = format_display_data(v)
    assert data["application/vnd.jupyter.widget-view+json"]["model_id"] == v.widget.model_id
    shown = Image.open(io.BytesIO(v.image.value))
    static = Image.open(io.BytesIO(base64.b64decode(data["image/jpeg"])))
    assert static.format == "JPEG" and max(static.size) <= 480
    assert static.size[0] * shown.size[1] == pytest.approx(static.size[1] * shown.size[0], rel=0.02)
    name = ds.entries[v.current].name
    assert data["text/plain"] == f"mask viewer on {name} (interactive where the notebook's kernel runs)"
    v.close()  # a closed viewer shown again: no widget, no traceback
    data, _ = format_display_data(v)
    assert "application/vnd.jupyter.widget-view+json" not in data and "image/jpeg" in data
    assert data["text/plain"] == f"mask viewer on {name} (closed)"
