"""``googlenet-suite predict IMAGE... --weights FILE``: top-k ImageNet classes of images, in one framework or all
side by side.

Preprocessing follows the variant's input pipeline, declared in the spec (``preprocess``: resize, center crop,
interpolation, value range, mean and std; :class:`shared_spec.Preprocess`), in Pillow and numpy, once for every
framework: torchvision's 256 then 224 for googlenet, 342 then 299 for inception-v3, Keras's and the FID network's
[-1, 1] at 299x299. A variant that declares none gets torchvision's ImageNet evaluation transform
(:data:`shared_spec.IMAGENET_EVAL`). For an input size other than the variant's the same ratios apply (shorter
side to round(size * 256 / 224), crop to the input size). torchvision's pretrained networks expect
``transform_input`` on (``convert --transform-input`` records it in the weight file, and predict builds the spec
the file names); a prediction notes when the pipeline says the weights want it and the network has it off.

The 1000 class names (``imagenet_classes.txt``, one per line) are torchvision's ``_IMAGENET_CATEGORIES``.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

import shared_spec
from shared_spec import InputError
from shared_spec import weights as W

from . import frameworks as fw_registry
from . import render
from .resize import resize_bilinear

MAX_PIXELS = 100_000_000  # larger images are refused before they are decoded (PIL's bomb limit is 179M), and
# so are images whose resized copy would be larger (an extreme aspect ratio: 1x100000 resizes to 256x25600000)


def class_names() -> list[str]:
    text = resources.files("googlenet_suite").joinpath("imagenet_classes.txt").read_text(encoding="utf-8")
    return text.splitlines()


def pipeline(spec: shared_spec.Spec) -> shared_spec.Preprocess:
    """The input pipeline ``predict`` runs for ``spec``: the variant's own, else torchvision's ImageNet evaluation
    transform, at the spec's input size."""
    return spec.preprocess or shared_spec.IMAGENET_EVAL.at(spec.input_size)


def load_image(path: Path, recipe: shared_spec.Preprocess) -> np.ndarray:
    """One image as a float32 (3, H, W) array, preprocessed as ``recipe`` says. Bounded before anything is
    allocated: the image's pixels and those of its resized copy."""
    try:
        from PIL import Image
    except ModuleNotFoundError:
        raise InputError("predict needs Pillow: pip install -c constraints.txt '.[predict]'") from None
    if not path.is_file():
        raise InputError(f"{path}: {'is a directory, not an image file' if path.is_dir() else 'no such image file'}")
    try:
        with warnings.catch_warnings(), Image.open(path) as image:
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit is below
            w, h = image.size
            if w * h > MAX_PIXELS:
                raise InputError(f"{path}: {w}x{h} pixels, over the limit of {MAX_PIXELS}")
            new = recipe.resized_size(w, h)
            if new[0] * new[1] > MAX_PIXELS:
                raise InputError(f"{path}: {w}x{h} pixels resize to {new[0]}x{new[1]} (shorter side to "
                                 f"{min(new)}), over the limit of {MAX_PIXELS} pixels; crop the image first")
            pixels = _resized(image.convert("RGB"), new, recipe)  # H x W x 3 in [0, 1]
    except InputError:
        raise
    except Exception as exc:  # the one boundary around Pillow: its decoders raise OSError, SyntaxError, ...
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise InputError(f"{path}: not an image Pillow can read: {first[:150]}") from None
    pixels = _center_crop(pixels, *recipe.crop)
    low, high = recipe.range
    pixels = pixels * np.float32(high - low) + np.float32(low)
    pixels = (pixels - np.asarray(recipe.mean, np.float32)) / np.asarray(recipe.std, np.float32)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1), dtype=np.float32)  # 3 x H x W


def _resized(image, size: tuple[int, int], recipe: shared_spec.Preprocess) -> np.ndarray:
    """``image`` (RGB) resized to ``size`` (w, h) as float32 H x W x 3 in [0, 1]: antialiased, by Pillow on the
    8-bit image (torchvision's Resize on a PIL image); without, bilinear at half-pixel centres on the [0, 1] floats
    (``F.interpolate(align_corners=False)`` on ``ToTensor``'s output), one channel at a time."""
    from PIL import Image

    if recipe.antialias:
        resample = {"bilinear": Image.BILINEAR}[recipe.interpolation]
        return np.asarray(image.resize(size, resample), dtype=np.float32) / np.float32(255)
    rgb = np.asarray(image)
    return np.stack([resize_bilinear(rgb[..., c].astype(np.float32) / np.float32(255), (size[1], size[0]))
                     for c in range(3)], axis=-1)


def _center_crop(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """torchvision's ``center_crop`` of an H x W x C array: zero padding first where the crop is larger than the
    image (an input size that is not square: the shorter side is resized to fit the smaller crop side)."""
    pad_h, pad_w = max(height - pixels.shape[0], 0), max(width - pixels.shape[1], 0)
    if pad_h or pad_w:
        pixels = np.pad(pixels, ((pad_h // 2, (pad_h + 1) // 2), (pad_w // 2, (pad_w + 1) // 2), (0, 0)))
    top, left = int(round((pixels.shape[0] - height) / 2.0)), int(round((pixels.shape[1] - width) / 2.0))
    return pixels[top:top + height, left:left + width]


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


def spec_request(weights: str | Path) -> tuple[str | None, dict[str, Any]]:
    """``(variant, overrides)`` a suite weight file names in its metadata (the network it was saved from)."""
    path = Path(weights)
    if not path.is_file():
        raise W.WeightsError(f"{path}: no such weight file")
    _, meta = W.read_header(path)
    overrides = W.check_metadata(meta, source=str(path))
    if "input_size" in overrides:
        overrides["input_size"] = tuple(overrides["input_size"])
    return meta.get("variant"), overrides


def split_variant(inputs: Sequence[str], spec_file=None) -> tuple[list[str], str | None]:
    """``predict IMAGE... [VARIANT]``: the images, and the variant when the last word names one (not a file)."""
    images = list(inputs)
    if len(images) > 1 and not Path(images[-1]).exists() and images[-1] in shared_spec.list_variants(spec_file):
        return images[:-1], images[-1]
    return images, None


@dataclass(frozen=True, slots=True)
class Prediction:
    """The top-k of every image in every framework that ran (``top[image][framework]``: class, name,
    probability), the frameworks left out, how far the logits are from the first framework's, the input pipeline
    the images went through and the notes on it."""

    spec: shared_spec.Spec
    weights: str
    k: int
    frameworks: tuple[str, ...]
    not_installed: Mapping[str, str]
    images: tuple[str, ...]
    top: tuple[Mapping[str, list[dict]], ...]
    max_abs_diff: Mapping[str, float] = field(default_factory=dict)
    preprocess: shared_spec.Preprocess = shared_spec.IMAGENET_EVAL
    notes: tuple[str, ...] = ()

    @property
    def top_identical(self) -> bool:
        ref = self.frameworks[0]
        return all([t["class"] for t in entry[key]] == [t["class"] for t in entry[ref]]
                   for entry in self.top for key in self.frameworks)

    def as_dict(self) -> dict:
        return {"variant": self.spec.variant, "weights": self.weights, "transform_input": self.spec.transform_input,
                "frameworks": list(self.frameworks), "not_installed": dict(self.not_installed),
                "images": [{"image": image, "top": dict(top)} for image, top in zip(self.images, self.top)],
                "max_abs_diff": dict(self.max_abs_diff), "top_identical": self.top_identical,
                "preprocess": self.preprocess.as_dict(), "notes": list(self.notes)}


def predict(spec: shared_spec.Spec, *, images: Sequence[str | Path], weights: str | Path, framework: str = "torch",
            top: int = 5, device: str = "auto") -> Prediction:
    """The top-``top`` classes of ``images`` in ``framework`` (a registry key, or ``all``), with the suite
    weight file ``weights`` for ``spec``. Every input is checked (options, weights, every image) before any
    framework is imported."""
    if top < 1:
        raise InputError(f"--top must be >= 1. Received: --top {top}")
    if framework != "all" and framework not in fw_registry.FRAMEWORKS:
        raise InputError(f"--framework: unknown framework {framework!r}; expected all or "
                         f"{', '.join(fw_registry.FRAMEWORKS)}")
    weights = Path(weights)
    if spec.in_channels != 3:
        named, _ = spec_request(weights)
        raise InputError(f"--weights {weights}: variant {spec.variant!r} "
                         f"({'named by the file' if named == spec.variant else 'from the command line'}) takes "
                         f"{spec.in_channels} input channel{'s' if spec.in_channels != 1 else ''}; predict reads RGB "
                         f"images (3 channels): give weights of a 3-channel variant")
    arrays, _ = W.load_weights(weights, spec)  # keys, shapes and dtypes checked once, for every framework
    recipe = pipeline(spec)
    x = np.stack([load_image(Path(path), recipe) for path in images])  # every image before any model
    keys = list(fw_registry.FRAMEWORKS) if framework == "all" else [framework]
    logits, missing = {}, {}
    for key in fw_registry.import_order(keys):
        try:
            mod = fw_registry.load(key)
        except fw_registry.FrameworkMissing as exc:
            if framework != "all":
                raise InputError(str(exc)) from None
            missing[key] = str(exc)
            continue
        model = mod.build(spec, device=device, seed=0)
        mod.import_weights(model, arrays)
        logits[key] = np.asarray(mod.forward(model, x), dtype=np.float32)
    keys = [key for key in keys if key in logits]
    names = class_names() if spec.num_classes == 1000 else [f"class {i}" for i in range(spec.num_classes)]
    k = min(top, spec.num_classes)
    tops = []
    for i in range(len(images)):
        entry = {}
        for key in keys:
            probs = _softmax(logits[key][i])
            order = np.argsort(-probs, kind="stable")[:k]
            entry[key] = [{"class": int(c), "name": names[c], "probability": float(probs[c])} for c in order]
        tops.append(entry)
    diffs = {key: float(np.abs(logits[key] - logits[keys[0]]).max()) for key in keys[1:]}
    return Prediction(spec, str(weights), k, tuple(keys), missing, tuple(map(str, images)), tuple(tops), diffs,
                      recipe, pipeline_notes(spec, recipe))


def pipeline_notes(spec: shared_spec.Spec, recipe: shared_spec.Preprocess) -> tuple[str, ...]:
    """What a reader of the top-k should know about the input: the weights the pipeline comes from run with
    ``transform_input`` on and this network has it off (a file converted without ``--transform-input``)."""
    if recipe.transform_input and spec.has_transform_input and not spec.transform_input:
        return (f"note: {spec.variant}'s pipeline comes from weights that run with transform_input on "
                f"({recipe.path}); this network has it off: convert with --transform-input, or pass it here",)
    return ()


def render_prediction(result: Prediction, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(result.as_dict(), indent=2) + "\n"
    spec, keys, k = result.spec, result.frameworks, result.k
    labels = {key: fw_registry.FRAMEWORKS[key].label for key in keys}
    text = []
    for image, entry in zip(result.images, result.top):
        rows = [[str(rank + 1), *(f"{entry[key][rank]['name']} ({entry[key][rank]['class']}) "
                                  f"{entry[key][rank]['probability']:.4f}" for key in keys)] for rank in range(k)]
        title = f"{image}: {spec.variant}{' (transform_input)' if spec.transform_input else ''}, top {k}"
        text.append(render.render_table(title, ["rank", *(labels[key] for key in keys)], rows, fmt))
    if len(keys) > 1:
        diffs = ", ".join(f"{key} {value:.2e}" for key, value in result.max_abs_diff.items())
        text.append(f"max abs diff of the logits vs {keys[0]}: {diffs}; top-{k} classes "
                    f"{'identical' if result.top_identical else 'DIFFER'} across {', '.join(keys)}\n")
    text.append(f"preprocess: {result.preprocess.describe()}\n")
    for key, message in result.not_installed.items():
        text.append(f"{key}: {message}\n")
    text.extend(f"{note}\n" for note in result.notes)
    return "".join(text)
