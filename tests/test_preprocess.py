"""Each variant's input pipeline (``preprocess`` in the spec): the facts of its source, the pipeline that
``predict`` runs against a numpy hand computation of the documented recipe on small made-up images, the schema's
and resolver's one-line refusals, ``inspect`` showing it, and ``predict`` on Inception v3 giving the same top-k in
every framework (matrix: four Inception v3 builds)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

import shared_spec
from googlenet_suite import predict
from googlenet_suite.cli import main
from shared_spec import SpecError

V3 = ("inception-v3", "inception-v3-keras", "inception-v3-fid", "inception-v3-gluon")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _image(tmp_path, name, pixels: np.ndarray):
    Image = pytest.importorskip("PIL.Image")
    path = tmp_path / name
    Image.fromarray(pixels).save(path)  # PNG: lossless, so the hand computation starts from the same bytes
    return path


def _pixels(height, width, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


# --------------------------------------------------------------------------- the facts, as the spec declares them


@pytest.mark.parametrize("variant, resize, crop, antialias, value_range, mean, std, transform_input", [
    ("inception-v3", 342, (299, 299), True, (0, 1), IMAGENET_MEAN, IMAGENET_STD, True),
    ("inception-v3-keras", (299, 299), (299, 299), True, (-1, 1), (0, 0, 0), (1, 1, 1), False),
    ("inception-v3-fid", (299, 299), (299, 299), False, (-1, 1), (0, 0, 0), (1, 1, 1), False),
    ("inception-v3-gluon", 342, (299, 299), False, (0, 1), IMAGENET_MEAN, IMAGENET_STD, False),
    ("googlenet", 256, (224, 224), True, (0, 1), IMAGENET_MEAN, IMAGENET_STD, True),
    ("googlenet-gluoncv", 256, (224, 224), False, (0, 1), IMAGENET_MEAN, IMAGENET_STD, False),
    ("d2l", 96, (96, 96), True, (0, 1), (0,), (1,), False),
])
def test_each_variant_declares_its_sources_pipeline(variant, resize, crop, antialias, value_range, mean, std,
                                                     transform_input):
    p = shared_spec.load(variant).preprocess
    assert (p.resize, p.crop, p.antialias, p.range, p.mean, p.std, p.transform_input) == \
           (resize, crop, antialias, value_range, mean, std, transform_input)
    assert p.interpolation == "bilinear" and p.source and p.path == f"$.variants.{variant}.preprocess"


def test_a_variant_without_a_pipeline_gets_torchvisions_evaluation_transform():
    spec = shared_spec.load("gluon-tutorial")  # 96x96
    assert spec.preprocess is None
    p = predict.pipeline(spec)
    assert (p.resize, p.crop, p.mean, p.std) == (110, (96, 96), IMAGENET_MEAN, IMAGENET_STD)  # round(96 * 256 / 224)


def test_an_input_size_override_scales_the_pipeline():
    assert shared_spec.load("inception-v3", input_size=(75, 75)).preprocess.resize == 86  # round(75 * 342 / 299)
    p = shared_spec.load("inception-v3-fid", input_size=(80, 100)).preprocess
    assert (p.resize, p.crop) == ((80, 100), (80, 100))
    assert shared_spec.load("d2l", in_channels=3).preprocess is None  # d2l's one-channel mean/std no longer fit


def test_the_transform_input_note_follows_the_network_built():
    off = shared_spec.load("inception-v3")
    (note,) = predict.pipeline_notes(off, predict.pipeline(off))
    assert "transform_input on" in note and "--transform-input" in note and "$.variants.inception-v3" in note
    on = shared_spec.load("inception-v3", transform_input=True)
    assert predict.pipeline_notes(on, predict.pipeline(on)) == ()
    keras = shared_spec.load("inception-v3-keras")
    assert predict.pipeline_notes(keras, predict.pipeline(keras)) == ()


# --------------------------------------------------------------------------- the pipeline against a hand computation


@pytest.mark.parametrize("variant", ["inception-v3", "inception-v3-gluon"])
def test_resize_342_crop_299_imagenet_normalised(variant, tmp_path):
    """An image whose shorter side is already 342 (W 342, H 400): the resize keeps it, the center crop starts at
    left round(43 / 2) = 22, top round(101 / 2) = 50 (Python's and torchvision's round), then /255 and
    (x - mean) / std per channel."""
    pixels = _pixels(400, 342)
    x = predict.load_image(_image(tmp_path, "a.png", pixels), predict.pipeline(shared_spec.load(variant)))
    crop = pixels[50:349, 22:321].astype(np.float64) / 255
    want = (crop - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    assert x.shape == (3, 299, 299) and x.dtype == np.float32
    np.testing.assert_allclose(x, want.transpose(2, 0, 1), rtol=0, atol=1e-5)


@pytest.mark.parametrize("variant", ["inception-v3-keras", "inception-v3-fid"])
def test_299_square_to_minus_one_one(variant, tmp_path):
    """Keras's preprocess_input mode 'tf' is x / 127.5 - 1; pytorch-fid's normalize_input is 2 * x - 1 on [0, 1]."""
    pixels = _pixels(299, 299, seed=1)
    x = predict.load_image(_image(tmp_path, "b.png", pixels), predict.pipeline(shared_spec.load(variant)))
    want = pixels.astype(np.float64) / 127.5 - 1
    np.testing.assert_allclose(x, want.transpose(2, 0, 1), rtol=0, atol=1e-6)


@pytest.mark.parametrize("variant, size, want", [
    ("inception-v3", (500, 400), (3, 299, 299)),  # shorter side 400 -> 342, 500 -> 427, crop 299
    ("inception-v3-keras", (600, 200), (3, 299, 299)),  # no crop: the aspect ratio is not kept
    ("inception-v3-fid", (37, 91), (3, 299, 299)),
])
def test_a_flat_image_stays_flat_at_the_input_size(variant, size, want, tmp_path):
    Image = pytest.importorskip("PIL.Image")
    path = tmp_path / "flat.png"
    Image.new("RGB", size, (200, 40, 0)).save(path)
    recipe = predict.pipeline(shared_spec.load(variant))
    x = predict.load_image(path, recipe)
    low, high = recipe.range
    value = (np.array([200, 40, 0]) / 255 * (high - low) + low - np.array(recipe.mean)) / np.array(recipe.std)
    assert x.shape == want
    np.testing.assert_allclose(x, np.broadcast_to(value.reshape(3, 1, 1), want), rtol=0, atol=1e-5)


def test_a_crop_wider_than_the_resized_image_pads_with_zeros_as_torchvision(tmp_path):
    """googlenet at 64x96: a 100x100 image's shorter side goes to round(64 * 256 / 224) = 73; the 96-wide crop
    pads (96 - 73) // 2 = 11 black columns on the left and 12 on the right, then takes rows 4..67
    (round(9 / 2) = 4), as torchvision's center_crop."""
    Image = pytest.importorskip("PIL.Image")
    path = tmp_path / "square.png"
    Image.new("RGB", (100, 100), (255, 255, 255)).save(path)
    x = predict.load_image(path, predict.pipeline(shared_spec.load("googlenet", input_size=(64, 96))))
    mean, std = np.array(IMAGENET_MEAN).reshape(3, 1, 1), np.array(IMAGENET_STD).reshape(3, 1, 1)
    want = np.concatenate([np.broadcast_to(value, (3, 64, n)) for value, n in
                           (((0 - mean) / std, 11), ((1 - mean) / std, 73), ((0 - mean) / std, 12))], axis=2)
    assert x.shape == (3, 64, 96)
    np.testing.assert_allclose(x, want, rtol=0, atol=1e-5)


def _bilinear_by_hand(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """F.interpolate(mode='bilinear', align_corners=False) written out: output (i, j) samples the input at
    ((i + 0.5) * H / out_h - 0.5, (j + 0.5) * W / out_w - 0.5), clamped to the image."""
    height, width = image.shape[:2]
    out = np.empty((out_h, out_w, *image.shape[2:]))
    for i in range(out_h):
        y = min(max((i + 0.5) * height / out_h - 0.5, 0.0), height - 1)
        y0 = int(y)
        y1, fy = min(y0 + 1, height - 1), y - int(y)
        for j in range(out_w):
            x = min(max((j + 0.5) * width / out_w - 0.5, 0.0), width - 1)
            x0 = int(x)
            x1, fx = min(x0 + 1, width - 1), x - int(x)
            top = (1 - fx) * image[y0, x0] + fx * image[y0, x1]
            bottom = (1 - fx) * image[y1, x0] + fx * image[y1, x1]
            out[i, j] = (1 - fy) * top + fy * bottom
    return out


def test_fids_resize_is_bilinear_without_antialias_on_the_unit_range(tmp_path):
    """inception-v3-fid at 75x75 (its pipeline scaled to the input size): a 13x7 image, resized by hand."""
    pixels = _pixels(7, 13, seed=2)
    x = predict.load_image(_image(tmp_path, "c.png", pixels),
                           predict.pipeline(shared_spec.load("inception-v3-fid", input_size=(75, 75))))
    want = 2 * _bilinear_by_hand(pixels.astype(np.float64) / 255, 75, 75) - 1
    np.testing.assert_allclose(x, want.transpose(2, 0, 1), rtol=0, atol=1e-5)


@pytest.mark.torch
def test_fids_resize_is_torchs_interpolate(tmp_path):
    """The same against pytorch-fid's own call, F.interpolate(x, size, mode='bilinear', align_corners=False)."""
    torch = pytest.importorskip("torch")
    pixels = _pixels(41, 23, seed=3)
    x = predict.load_image(_image(tmp_path, "d.png", pixels),
                           predict.pipeline(shared_spec.load("inception-v3-fid", input_size=(75, 75))))
    t = torch.from_numpy(pixels.transpose(2, 0, 1)[None].astype(np.float32) / 255)
    want = 2 * torch.nn.functional.interpolate(t, size=(75, 75), mode="bilinear", align_corners=False)[0] - 1
    np.testing.assert_allclose(x, want.numpy(), rtol=0, atol=1e-5)


@pytest.mark.torch
def test_antialiased_is_torchvisions_resize_within_one_8_bit_level(tmp_path):
    """inception-v3's resize of a 500x400 image (shorter side 342: 427x342) by Pillow against torchvision's tensor
    path, F.interpolate(mode='bilinear', antialias=True): Pillow rounds to 8 bits, so within 1/255."""
    torch = pytest.importorskip("torch")
    pixels = _pixels(400, 500, seed=5)
    recipe = predict.pipeline(shared_spec.load("inception-v3"))
    x = predict.load_image(_image(tmp_path, "e.png", pixels), recipe)
    t = torch.from_numpy(pixels.transpose(2, 0, 1)[None].astype(np.float32) / 255)
    resized = torch.nn.functional.interpolate(t, size=(342, 427), mode="bilinear", align_corners=False,
                                              antialias=True)[0].numpy()
    crop = resized[:, 22:321, 64:363]  # top round(43 / 2) = 22, left round(128 / 2) = 64
    mean, std = np.array(IMAGENET_MEAN).reshape(3, 1, 1), np.array(IMAGENET_STD).reshape(3, 1, 1)
    assert x.shape == (3, 299, 299)
    assert np.abs((x * std + mean) - crop).max() <= 1 / 255 + 1e-6


# --------------------------------------------------------------------------- refusals: one line with the JSON path


def _v3_load_error(tmp_path, mutate) -> str:
    doc = json.loads((shared_spec.spec.HERE / "inception_v3.json").read_text())
    mutate(doc["variants"]["inception-v3"]["preprocess"])
    path = tmp_path / "v3.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(SpecError) as info:
        shared_spec.load("inception-v3", spec_file=path)
    message = str(info.value)
    assert "\n" not in message and "v3.json: $.variants.inception-v3.preprocess" in message, message
    return message


@pytest.mark.parametrize("mutate, where, what", [
    (lambda p: p.update(crop=400), "$.variants.inception-v3.preprocess.crop", "larger than the resized image"),
    (lambda p: p.update(resize=[299, 200], crop=[299, 299]), "$.variants.inception-v3.preprocess.crop",
     "larger than the resized image (299x200"),
    (lambda p: p["std"].__setitem__(1, 0), "$.variants.inception-v3.preprocess.std[1]", "less than or equal to"),
    (lambda p: p.update(mean=[0.5, 0.5]), "$.variants.inception-v3.preprocess.mean", "2 values for 3 input channels"),
    (lambda p: p.update(std=[0.2, 0.2, 0.2, 0.2]), "$.variants.inception-v3.preprocess.std",
     "4 values for 3 input channels"),
    (lambda p: p.update(range=[1, 0]), "$.variants.inception-v3.preprocess.range", "expected low < high"),
    (lambda p: p.update(range=[0]), "$.variants.inception-v3.preprocess.range", "too short"),
    (lambda p: p.update(interpolation="lanczos"), "$.variants.inception-v3.preprocess.interpolation", "lanczos"),
    (lambda p: p.update(resize=0), "$.variants.inception-v3.preprocess.resize", ""),
    (lambda p: p.update(crop_pct=0.875), "$.variants.inception-v3.preprocess", "unknown key: 'crop_pct'"),
    (lambda p: p.pop("source"), "$.variants.inception-v3.preprocess", "'source' is a required property"),
])
def test_a_bad_pipeline_is_one_line_naming_its_json_path(tmp_path, mutate, where, what):
    message = _v3_load_error(tmp_path, mutate)
    assert f": {where}" in message and what in message, message


def test_transform_input_in_a_pipeline_needs_the_variants_transform_input(tmp_path):
    doc = json.loads((shared_spec.spec.HERE / "inception_v3.json").read_text())
    variant = copy.deepcopy(doc["variants"]["inception-v3-keras"])
    variant["preprocess"]["transform_input"] = True
    doc["variants"]["inception-v3-keras"] = variant
    path = tmp_path / "v3.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(SpecError, match=r"\$\.variants\.inception-v3-keras\.preprocess\.transform_input: true, "
                                        r"but this variant declares no transform_input"):
        shared_spec.load("inception-v3-keras", spec_file=path)


def test_the_cli_refuses_a_bad_pipeline_with_exit_2(tmp_path, capsys):
    doc = json.loads((shared_spec.spec.HERE / "inception_v3.json").read_text())
    doc["variants"]["inception-v3"]["preprocess"]["crop"] = 400
    path = tmp_path / "v3.json"
    path.write_text(json.dumps(doc))
    code = main(["inspect", "inception-v3", "--spec", str(path)])
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2 and out == "" and len(lines) == 1 and "$.variants.inception-v3.preprocess.crop" in lines[0]


# --------------------------------------------------------------------------- inspect and predict


def test_inspect_shows_the_pipeline_and_its_source(capsys):
    assert main(["inspect", "inception-v3"]) == 0
    out = capsys.readouterr().out
    assert "preprocess: shorter side to 342, center crop 299x299" in out and "Inception_V3_Weights" in out
    assert main(["inspect", "inception-v3-fid", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)["preprocess"]
    assert data["resize"] == [299, 299] and data["range"] == [-1, 1] and data["antialias"] is False
    assert main(["inspect", "googlenet-paper"]) == 0
    assert "preprocess: none declared" in capsys.readouterr().out


@pytest.fixture(scope="module")
def v3_files(tmp_path_factory):
    """inception-v3 at 75x75 (the smallest input it takes) with He-scaled random weights and realistic BatchNorm
    statistics, saved with transform_input on (as torchvision's weights run), and one made-up image."""
    Image = pytest.importorskip("PIL.Image")
    root = tmp_path_factory.mktemp("v3")
    rng = np.random.default_rng(0)
    Image.fromarray(_pixels(90, 120, seed=4)).save(root / "wide.png")
    spec = shared_spec.load("inception-v3", input_size=(75, 75), transform_input=True)
    weights = {}
    for key, shape in spec.weight_shapes().items():
        if key.endswith("weight"):
            weights[key] = rng.normal(0, (2.0 / np.prod(shape[1:])) ** 0.5, shape).astype(np.float32)
        elif key.endswith(("gamma", "running_var")):
            weights[key] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        else:
            weights[key] = rng.normal(0, 0.1, shape).astype(np.float32)
    shared_spec.weights.save_weights(root / "v3.safetensors", weights, spec)
    return root


@pytest.mark.matrix
@pytest.mark.cross
@pytest.mark.slow
def test_predict_on_inception_v3_gives_the_same_top5_in_every_framework(v3_files, capsys):
    code = main(["predict", str(v3_files / "wide.png"), "--weights", str(v3_files / "v3.safetensors"),
                 "--framework", "all", "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)
    assert result["variant"] == "inception-v3" and result["transform_input"] and result["notes"] == []
    assert result["preprocess"]["resize"] == 86 and result["preprocess"]["crop"] == [75, 75]
    assert len(result["frameworks"]) >= 2 and result["top_identical"], result
    assert max(result["max_abs_diff"].values()) <= 1e-4
    (entry,) = result["images"]
    assert len({tuple(t["class"] for t in top) for top in entry["top"].values()}) == 1
