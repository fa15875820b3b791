"""``googlenet-suite predict IMAGE... --weights FILE``: top-k ImageNet classes of images, in one framework or all
side by side.

Preprocessing is torchvision's ImageNet evaluation transform, in PIL and numpy: resize the shorter side to
256 (bilinear), center crop 224, scale to [0, 1], normalise by ImageNet's mean and std. For a variant whose
input is not 224 the same ratios apply (shorter side to round(size * 256 / 224), crop to the input size).
torchvision's pretrained GoogLeNet expects ``transform_input`` on (``convert --transform-input`` records it
in the weight file, and predict builds the spec the file names).

The 1000 class names (``imagenet_classes.txt``, one per line) are torchvision's ``_IMAGENET_CATEGORIES``.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Callable

import numpy as np

import shared_spec
from shared_spec import weights as W

from . import frameworks as fw_registry
from . import render
from .console import UsageError

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
RESIZE, CROP = 256, 224
MAX_PIXELS = 100_000_000  # larger images are refused before they are decoded (PIL's bomb limit is 179M)


def class_names() -> list[str]:
    text = resources.files("googlenet_suite").joinpath("imagenet_classes.txt").read_text(encoding="utf-8")
    return text.splitlines()


def load_image(path: Path, size: tuple[int, int]) -> np.ndarray:
    """One image as a float32 (3, H, W) array, preprocessed as torchvision's ImageNet evaluation transform."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ModuleNotFoundError:
        raise UsageError("predict needs Pillow: pip install -c constraints.txt '.[predict]'") from None
    if not path.is_file():
        raise UsageError(f"{path}: {'is a directory, not an image file' if path.is_dir() else 'no such image file'}")
    try:
        with Image.open(path) as image:
            if image.width * image.height > MAX_PIXELS:
                raise UsageError(f"{path}: {image.width}x{image.height} pixels, over the limit of {MAX_PIXELS}")
            image = image.convert("RGB")
            height, width = size
            short = round(min(height, width) * RESIZE / CROP)
            w, h = image.size
            new = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
            image = image.resize(new, Image.BILINEAR)
            left, top = int(round((new[0] - width) / 2.0)), int(round((new[1] - height) / 2.0))
            image = image.crop((left, top, left + width, top + height))
            pixels = np.asarray(image, dtype=np.float32) / 255.0
    except UsageError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise UsageError(f"{path}: not an image Pillow can read: {first[:150]}") from None
    pixels = (pixels - np.asarray(MEAN, np.float32)) / np.asarray(STD, np.float32)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))  # 3 x H x W


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


def _spec_from_weights(path: Path, variant: str | None, load_spec: Callable[..., shared_spec.Spec],
                       given: dict) -> shared_spec.Spec:
    """The spec the weight file names (variant, overrides), with the command line's variant and overrides
    taking precedence."""
    if not path.is_file():
        raise W.WeightsError(f"{path}: no such weight file")
    _, meta = W.read_header(path)
    overrides = W.check_metadata(meta, source=str(path))
    if "input_size" in overrides:
        overrides["input_size"] = tuple(overrides["input_size"])
    chosen = {**overrides, **{k: v for k, v in given.items() if v is not None}}
    return load_spec(variant or meta.get("variant"), **chosen)


def main(args, *, load_spec: Callable[..., shared_spec.Spec], given: dict, write_output: Callable) -> int:
    if args.top < 1:
        raise UsageError(f"--top must be >= 1. Received: --top {args.top}")
    images, variant = list(args.inputs), None
    if len(images) > 1 and not Path(images[-1]).exists() and images[-1] in shared_spec.list_variants(args.spec):
        variant = images.pop()  # predict IMAGE... VARIANT
    weights = Path(args.weights)
    spec = _spec_from_weights(weights, variant, load_spec, given)
    if spec.in_channels != 3:
        raise UsageError(f"predict: variant {spec.variant!r} takes {spec.in_channels} input channels; "
                         f"images are RGB (3)")
    x = np.stack([load_image(Path(path), spec.input_size) for path in images])  # every image before any model
    keys = list(fw_registry.FRAMEWORKS) if args.framework == "all" else [args.framework]
    logits, missing = {}, {}
    for key in fw_registry.import_order(keys):
        try:
            mod = fw_registry.load(key)
        except fw_registry.FrameworkMissing as exc:
            if args.framework != "all":
                raise UsageError(str(exc)) from None
            missing[key] = str(exc)
            continue
        model = mod.build(spec, device=args.device, seed=0)
        mod.load_weights(model, weights)
        logits[key] = np.asarray(mod.forward(model, x), dtype=np.float32)
    keys = [key for key in keys if key in logits]
    names = class_names() if spec.num_classes == 1000 else [f"class {i}" for i in range(spec.num_classes)]
    k = min(args.top, spec.num_classes)
    result = {"variant": spec.variant, "weights": str(weights), "transform_input": spec.transform_input,
              "frameworks": keys, "not_installed": missing, "images": []}
    for i, path in enumerate(images):
        entry = {"image": str(path), "top": {}}
        for key in keys:
            probs = _softmax(logits[key][i])
            order = np.argsort(-probs, kind="stable")[:k]
            entry["top"][key] = [{"class": int(c), "name": names[c], "probability": float(probs[c])} for c in order]
        result["images"].append(entry)
    ref = keys[0]
    result["max_abs_diff"] = {key: float(np.abs(logits[key] - logits[ref]).max()) for key in keys[1:]}
    same = all([t["class"] for t in entry["top"][key]] == [t["class"] for t in entry["top"][ref]]
               for entry in result["images"] for key in keys)
    result["top_identical"] = same
    if args.format == "json":
        write_output(json.dumps(result, indent=2) + "\n", args.output)
        return 0
    labels = {key: fw_registry.FRAMEWORKS[key].label for key in keys}
    text = []
    for entry in result["images"]:
        rows = []
        for rank in range(k):
            row = [str(rank + 1)]
            for key in keys:
                top = entry["top"][key][rank]
                row.append(f"{top['name']} ({top['class']}) {top['probability']:.4f}")
            rows.append(row)
        title = f"{entry['image']}: {spec.variant}{' (transform_input)' if spec.transform_input else ''}, top {k}"
        text.append(render.render_table(title, ["rank", *(labels[key] for key in keys)], rows, args.format))
    if len(keys) > 1:
        diffs = ", ".join(f"{key} {value:.2e}" for key, value in result["max_abs_diff"].items())
        text.append(f"max abs diff of the logits vs {ref}: {diffs}; top-{k} classes "
                    f"{'identical' if same else 'DIFFER'} across {', '.join(keys)}\n")
    for key, message in missing.items():
        text.append(f"{key}: {message}\n")
    write_output("".join(text), args.output)
    return 0
