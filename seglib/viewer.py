"""An interactive mask viewer for JupyterLab (ipywidgets).

`MaskViewer(dataset)` shows images with their ground truth; given a `model` it also shows
predictions (re-thresholded live) and error maps; given an evaluation table (`evaluate()`'s
DataFrame) it can sort by Dice, worst first. An upload box segments your own photo with the model.

Everything it draws comes from `render()`, a plain RGB array, so the logic is testable without a
browser: change a widget's value and the picture changes.
"""

from __future__ import annotations

import base64
import html
import io
from collections import OrderedDict
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import nn

from .data import CorruptSampleError, OxfordPetDataset
from .engine import predict_logits
from .engine.predictions import (
    FALSE_NEGATIVE_COLOUR,
    FALSE_POSITIVE_COLOUR,
    PREDICTION_COLOUR,
    Prediction,
    predict_image,
)
from .metrics import confusion_counts, dice_from_counts, foreground
from .plots import overlay, shrink

__all__ = ["MaskViewer", "SORT_ORDERS"]

SORT_ORDERS = ("name", "dice ascending")
TRUTH_COLOUR = np.array([40, 200, 60], np.float32)  # green
PRED_COLOUR = np.array(PREDICTION_COLOUR, np.float32)  # orange, as in the saved overlays
FP_COLOUR = np.array(FALSE_POSITIVE_COLOUR, np.float32)  # red
FN_COLOUR = np.array(FALSE_NEGATIVE_COLOUR, np.float32)  # blue


class MaskViewer:
    """Browse a dataset with its truth, a model's predictions and error maps.

    Widgets: index slider, previous/next buttons, a name box (Enter jumps to that image), overlay
    opacity, threshold, toggles for truth / prediction / errors, sort order (by name, by Dice
    ascending) and an upload box for your own photo. `viewer.widget` is what a notebook displays. The
    model's predictions of the images seen last are kept, up to `cache_mb` MiB; `close()` lets go of
    them and of the widgets. `replaces=globals().get("viewer")` closes the viewer a notebook cell made
    before it was run again (anything else given is ignored).
    """

    def __init__(
        self,
        dataset: OxfordPetDataset,
        model: nn.Module | None = None,
        table: pd.DataFrame | None = None,
        image_size: int | None = None,
        threshold: float = 0.5,
        max_side: int = 512,
        device: str = "auto",
        sort: str = "name",
        cache_mb: float = 512,
        replaces: object = None,
    ) -> None:
        if isinstance(replaces, MaskViewer):  # a notebook cell run again: its last viewer goes
            replaces.close()
        if len(dataset) == 0:
            raise ValueError("MaskViewer needs a dataset with at least one image")
        self.dataset, self.model, self.image_size, self.device = dataset, model, image_size, device
        self.max_side = max_side
        self._index_of = {n: i for i, n in enumerate(dataset.names)}
        self._table_dice = self._dice_from_table(table)
        self._table_names = set() if table is None else set(table["name"])
        # the model's logits of the images seen last, at their original size (4 bytes a pixel: a 48-megapixel
        # photo's are 190 MB): the threshold moves, they do not. At most `cache_mb`, and the image on show.
        self._logit_cache: OrderedDict[int, torch.Tensor] = OrderedDict()
        self.cache_mb = cache_mb
        # the image on show and its truth, read once: a 48-megapixel photo took a second to read at each
        # move of the threshold or opacity
        self._pair_on_show: tuple[int, np.ndarray, np.ndarray] | None = None
        self._upload: tuple[str, Prediction] | None = None  # your photo (file name, prediction) on show

        self._make_widgets(threshold, model is not None, len(dataset))
        self._wire()
        self.widget = self._layout()
        if sort not in self.sort.options:
            raise ValueError(
                f"sort={sort!r}; choose one of {list(self.sort.options)} (Dice needs a model or a table)"
            )
        self.sort.value = sort
        if sort != "name":
            self.index.value = 0  # start at the worst image
        self.refresh()

    def _make_widgets(self, threshold: float, has_model: bool, n: int) -> None:
        """The controls; those that need a model (or a table of Dice) are disabled without one."""
        self.index = widgets.IntSlider(0, 0, n - 1, description="index", continuous_update=False)
        self.prev_button = widgets.Button(description="◀ previous", layout=widgets.Layout(width="110px"))
        self.next_button = widgets.Button(description="next ▶", layout=widgets.Layout(width="110px"))
        self.name_box = widgets.Text(
            placeholder="image name, Enter to jump", description="name", continuous_update=False
        )
        self.opacity = widgets.FloatSlider(0.45, min=0.0, max=1.0, step=0.05, description="opacity")
        if not 0 < threshold < 1:
            raise ValueError(f"threshold={threshold!r}; give a probability in (0, 1), e.g. 0.5")
        self.threshold = widgets.FloatSlider(  # the range holds the threshold given (0.97 was set to 0.95)
            threshold, min=min(0.05, threshold), max=max(0.95, threshold), step=0.05,
            description="threshold", disabled=not has_model,
        )  # fmt: skip
        self.show_truth = widgets.ToggleButton(True, description="truth")
        self.show_pred = widgets.ToggleButton(has_model, description="prediction", disabled=not has_model)
        self.show_errors = widgets.ToggleButton(False, description="errors", disabled=not has_model)
        can_sort = has_model or self._table_dice is not None
        self.sort = widgets.Dropdown(
            options=SORT_ORDERS if can_sort else SORT_ORDERS[:1], value="name", description="sort"
        )
        self.upload = widgets.FileUpload(
            accept="image/*", multiple=False, description="segment a photo", disabled=not has_model
        )
        self.image = widgets.Image(format="png")
        self.status = widgets.HTML()
        self.order = list(range(n))

    def _wire(self) -> None:
        """Each control to what it changes."""
        self.index.observe(lambda _: self._on_index(), "value")
        for w in (self.opacity, self.show_truth, self.show_pred, self.show_errors):
            w.observe(lambda _: self.refresh(), "value")
        self.threshold.observe(lambda _: self._on_threshold(), "value")
        self.sort.observe(lambda _: self._on_sort(), "value")
        self.upload.observe(lambda _: self._on_upload(), "value")
        self.prev_button.on_click(lambda _: self.step(-1))
        self.next_button.on_click(lambda _: self.step(+1))
        self.name_box.observe(lambda change: self.jump_to(change["new"]), "value")

    def _layout(self) -> widgets.VBox:
        controls = widgets.VBox(
            [
                widgets.HBox([self.prev_button, self.index, self.next_button]),
                widgets.HBox([self.name_box, self.sort]),
                widgets.HBox([self.opacity, self.threshold]),
                widgets.HBox([self.show_truth, self.show_pred, self.show_errors, self.upload]),
            ]
        )
        return widgets.VBox([controls, self.status, self.image])

    # --- navigation ---------------------------------------------------------------------------------
    @property
    def current(self) -> int:
        """Dataset index of the image on show (the slider walks through `order`)."""
        return self.order[self.index.value]

    def step(self, delta: int) -> None:
        self.index.value = int(np.clip(self.index.value + delta, 0, len(self.order) - 1))

    def jump_to(self, name: str) -> bool:
        """Show the image called `name`; False (and a note) when there is none."""
        name = name.strip()
        if name not in self._index_of:
            if name:
                self.status.value = f"<b>no image named {name!r}</b> in this {self.dataset.split} split"
            return False
        self._upload = None
        self.index.value = self.order.index(self._index_of[name])
        self.refresh()
        return True

    def _on_index(self) -> None:
        self._upload = None
        if self.name_box.value.strip() not in ("", self.dataset.names[self.current]):
            self.name_box.value = ""  # moved away: the same name entered again is a change, and jumps back
        self.refresh()

    def _on_threshold(self) -> None:
        # the model's Dice moves with the threshold: an order by it is made again (a table's Dice does not)
        if self.sort.value == "dice ascending" and self._table_dice is None:
            self._on_sort()
        else:
            self.refresh()

    def _on_sort(self) -> None:
        shown = self.current
        if self.sort.value == "dice ascending":
            dice = self._table_dice if self._table_dice is not None else self._model_dice()
            # images without a Dice (not in the table: left out as unreadable) go last; NaN would
            # scramble the order, since it compares false with everything
            self.order = sorted(range(len(self.dataset)), key=lambda i: (np.isnan(dice[i]), dice[i], i))
        else:
            self.order = list(range(len(self.dataset)))
        if self.index.value != self.order.index(shown):
            self.index.value = self.order.index(shown)
        self.refresh()

    # --- data ---------------------------------------------------------------------------------------------
    def _dice_from_table(self, table: pd.DataFrame | None) -> np.ndarray | None:
        if table is None:
            return None
        missing = {"name", "dice"} - set(table.columns)
        if missing:
            raise ValueError(
                f"table needs columns 'name' and 'dice' (evaluate()'s output); missing {sorted(missing)}"
            )
        twice = table["name"][table["name"].duplicated()].unique()
        if len(twice):  # two models' rows: the last one's Dice would win, unsaid
            raise ValueError(
                f"table holds more than one row for {', '.join(map(str, twice[:3]))} (two models' rows?); "
                "pass one model's rows, e.g. table[table.model == 'unet']"
            )
        by_name = dict(zip(table["name"], table["dice"], strict=True))
        return np.array([by_name.get(n, np.nan) for n in self.dataset.names], dtype=np.float64)

    def logits(self, i: int) -> torch.Tensor:
        """The model's logits for image i at its original size (kept for the images seen last, up to
        `cache_mb`)."""
        cache = self._logit_cache
        if i in cache:
            cache.move_to_end(i)
            return cache[i]
        if self.model is None:  # the widgets reach this only with a model; a caller may not
            raise ValueError("a viewer without a model has no logits: MaskViewer(dataset, model)")
        cache[i] = predict_logits(self.model, self.dataset.load_image(i), self.image_size, self.device)
        while len(cache) > 1 and self.cached_bytes > self.cache_mb * 2**20:
            cache.popitem(last=False)  # the one seen longest ago
        return cache[i]

    @property
    def cached_bytes(self) -> int:
        """The bytes of logits the viewer keeps (at most `cache_mb` MiB, or one image's)."""
        return sum(t.numel() * t.element_size() for t in self._logit_cache.values())

    def _model_dice(self) -> np.ndarray:
        """Every image's Dice; NaN for one that cannot be read (sorted last)."""
        return np.array([self._dice_or_nan(i) for i in range(len(self.dataset))])

    def _dice_or_nan(self, i: int) -> float:
        try:
            return self.dice(i)
        except CorruptSampleError:
            return float("nan")

    def _pair(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Image i and its truth, kept while it is on show."""
        pair = self._pair_on_show
        if pair is None or pair[0] != i:
            pair = self._pair_on_show = (i, self.dataset.load_image(i), self.dataset.load_mask(i))
        return pair[1], pair[2]

    def dice(self, i: int) -> float:
        """Dice of image i at the current threshold (original resolution)."""
        pair = self._pair_on_show
        truth = torch.from_numpy(pair[2] if pair is not None and pair[0] == i else self.dataset.load_mask(i))
        threshold = float(self.threshold.value)
        return float(dice_from_counts(*confusion_counts(self.logits(i)[None], truth[None], threshold)))

    def _on_upload(self) -> None:
        files = self.upload.value
        if not files or self.model is None:
            return
        f = files[0]
        try:
            photo = Image.open(io.BytesIO(bytes(f["content"])))
            # The same prediction as `python -m seglib predict`: save_prediction(viewer.upload_prediction,
            # DIR) writes the files that command writes.
            pred = predict_image(self.model, photo, Path(f["name"]).stem, self.image_size, self.device)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            self._upload = None  # the photo before it is no longer on show, nor what upload_prediction gives
            self.refresh()
            # a callback's exception reaches no one in a notebook: the status line says it
            self.status.value = (
                f"<b>cannot segment {html.escape(f['name'])}</b>: {html.escape(str(e))}. An image PIL "
                "opens (jpg, png, webp, ...) works; export an iPhone's HEIC photo as JPEG"
            )
            return
        self._upload = (f["name"], pred)
        self.refresh()

    @property
    def upload_prediction(self) -> Prediction | None:
        """The uploaded photo's prediction while it is on show (`seglib.engine.save_prediction` saves it)."""
        return self._upload[1] if self._upload is not None else None

    # --- drawing --------------------------------------------------------------------------------------------
    def render(self) -> np.ndarray:
        """The picture on show, as uint8 HxWx3 at the image's size."""
        return self._draw(1)

    def _step(self) -> int:
        """Every how many pixels the widget's picture is drawn: it stays at least `max_side`, then resized."""
        if self._upload is not None:
            return 1
        try:
            return max(1, max(self.dataset.original_size(self.current)) // self.max_side)
        except (OSError, ValueError, Image.DecompressionBombError):
            return 1  # reading the image says what is wrong with it

    def _draw(self, step: int) -> np.ndarray:
        """The picture from every `step`-th pixel (the photo box-filtered): a large one shown at a few hundred
        pixels is not blended at full size."""
        t = float(self.threshold.value)
        if self._upload is not None:
            upload = self._upload[1]
            return upload.overlay(t, self.opacity.value) if self.show_pred.value else upload.image
        i = self.current
        image, truth = self._pair(i)
        pred = foreground(self.logits(i), t).numpy() if self.model is not None else None
        image, truth = shrink(image, step), shrink(truth, step)
        pred = None if pred is None else shrink(pred, step)
        return overlay(image, self._layers(truth, pred), self.opacity.value)

    def _comparing(self) -> bool:
        """Whether the picture compares prediction and truth: both on, or the errors."""
        return self.model is not None and (
            (self.show_truth.value and self.show_pred.value) or self.show_errors.value
        )

    def _layers(self, truth: np.ndarray, pred: np.ndarray | None) -> list[tuple[np.ndarray, np.ndarray]]:
        """What is painted, each pixel once: a mask alone in its colour; prediction against the truth by
        kind (stacked, the truth's green under the orange made one olive of right and wrong pixels for
        red-green colour blindness)."""
        if pred is None or not self._comparing():
            shown = [(truth == 1, TRUTH_COLOUR, self.show_truth.value)]
            shown.append((pred, PRED_COLOUR, pred is not None and self.show_pred.value))
            return [(mask, colour) for mask, colour, on in shown if on]
        false_pos = pred & (truth == 0)  # the unsure border band (IGNORE_INDEX) is no error either way
        layers = [(false_pos, FP_COLOUR), (~pred & (truth == 1), FN_COLOUR)]
        if self.show_truth.value or self.show_pred.value:
            layers.insert(0, (pred & ~false_pos, PRED_COLOUR))  # right, or in the band
        return layers

    def _status(self) -> str:
        if self._upload is not None:
            name, pred = self._upload
            share = pred.mask(float(self.threshold.value)).mean()
            return f"<b>{html.escape(name)}</b> (your photo: prediction only, {share:.1%} object)"
        i = self.current
        e = self.dataset.entries[i]
        h, w = self.dataset.original_size(i)
        parts = [  # names from files and folders are text: "<img onerror=...>.jpg" is a legal file name
            f"<b>{html.escape(e.name)}</b>",
            html.escape(e.breed),
            html.escape(e.species),
            f"{w}x{h} px",
            f"{self.index.value + 1}/{len(self.order)}",
        ]
        if self.model is not None:
            # fp32, as predict_logits computes; evaluate's table can be bf16 autocast, a little apart
            parts.append(f"Dice {self.dice(i):.4f} at threshold {self.threshold.value:.2f} (fp32)")
        elif self._table_dice is not None:
            d = self._table_dice[i]
            if not np.isnan(d):
                parts.append(f"Dice {d:.4f} (from the table)")
            else:  # a row without a Dice is in the table all the same
                parts.append("no Dice in the table" if e.name in self._table_names else "not in the table")
        return " · ".join(parts) + self._legend()

    def _legend(self) -> str:
        """The colours on show (`_layers`): without a model, the truth's only."""
        if self._comparing():
            layers = [
                ("correct orange", self.show_truth.value or self.show_pred.value),
                ("false positives red, false negatives blue", True),
            ]
        else:
            layers = [("truth green", self.show_truth.value)]
            layers.append(("prediction orange", self.model is not None and self.show_pred.value))
        legend = ", ".join(name for name, on in layers if on)
        return f"<br><small>{legend}</small>" if legend else ""

    def refresh(self) -> None:
        """Redraw the picture and the status line (an image that cannot be read: the line says so)."""
        try:
            rgb = self._draw(self._step())
        except CorruptSampleError as e:  # a widget callback's exception would reach no one
            self.image.value = b""
            name = html.escape(self.dataset.entries[self.current].name)
            self.status.value = f"<b>cannot show {name}</b>: {html.escape(str(e))}"
            return
        scale = self.max_side / max(rgb.shape[:2])
        pil = Image.fromarray(rgb)
        if scale < 1:
            pil = pil.resize(
                (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale)), Image.Resampling.BILINEAR
            )
        buf = io.BytesIO()
        pil.save(buf, format="PNG")
        self.image.value = buf.getvalue()
        # Show it at its own size: by default JupyterLab stretches an Image widget to the full output width.
        self.image.layout.width, self.image.layout.height = f"{pil.width}px", f"{pil.height}px"
        self.status.value = self._status()

    def close(self) -> None:
        """Close the widgets and let go of the predictions kept and the image on show.

        ipywidgets keeps every widget until it is closed, and with its callbacks the viewer: a notebook cell
        run again kept each earlier viewer and its logits (up to `cache_mb` each) for the kernel's life.
        """
        boxes = [self.widget]
        while boxes:
            w = boxes.pop()
            boxes += list(getattr(w, "children", ()))
            # a widget's layout and style are widgets of their own, which its close() leaves open
            for part in (w, getattr(w, "layout", None), getattr(w, "style", None)):
                if part is not None:
                    part.close()
        self._logit_cache.clear()
        self._pair_on_show = self._upload = None

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        """The widget, and beside it the picture on show (a JPEG of at most `STATIC_SIDE` px) and a line of
        text: what a page without the notebook's running kernel shows instead (GitHub, nbviewer, an HTML
        export, a notebook reopened). A closed viewer: the picture and the line only."""
        bundle = {} if self.widget.comm is None else self.widget._repr_mimebundle_(**kwargs)
        if self.image.value:
            bundle["image/jpeg"] = base64.b64encode(_static_picture(self.image.value)).decode("ascii")
        name = self.dataset.entries[self.current].name
        closed = "closed" if self.widget.comm is None else "interactive where the notebook's kernel runs"
        bundle["text/plain"] = f"mask viewer on {name} ({closed})"
        return bundle

    def __repr__(self) -> str:
        return f"MaskViewer({self.dataset!r}, model={'yes' if self.model is not None else 'no'})"


STATIC_SIDE = 480  # the picture a page without widgets shows: small beside the notebook's figures


def _static_picture(png: bytes) -> bytes:
    """The viewer's PNG as a JPEG of at most `STATIC_SIDE` px a side."""
    with Image.open(io.BytesIO(png)) as opened:
        im = opened.convert("RGB")
        im.thumbnail((STATIC_SIDE, STATIC_SIDE), Image.Resampling.BILINEAR)
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=85)
    return buf.getvalue()
