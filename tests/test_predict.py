"""``googlenet-suite predict``: torchvision's ImageNet evaluation preprocessing in PIL, the shipped class
names, and the same top-k in every framework. Lean: googlenet at 64x64 (1000 classes, so the ImageNet
names), two small images the test makes, every framework once."""

from __future__ import annotations

import json

import numpy as np
import pytest

import shared_spec
from googlenet_suite import predict
from googlenet_suite.cli import main

SIZE = 64


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    Image = pytest.importorskip("PIL.Image")
    root = tmp_path_factory.mktemp("predict")
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((90, 120, 3)) * 255).astype(np.uint8)).save(root / "wide.png")
    Image.fromarray((rng.random((100, 70)) * 255).astype(np.uint8)).save(root / "tall_grey.jpg")
    spec = shared_spec.load("googlenet", input_size=(SIZE, SIZE), transform_input=True)
    weights = {}
    for key, shape in spec.weight_shapes().items():
        if key.endswith("weight"):  # He-like scale: O(1) logits, so the top 5 are well separated
            weights[key] = rng.normal(0, (2.0 / np.prod(shape[1:])) ** 0.5, shape).astype(np.float32)
        elif key.endswith(("gamma", "running_var")):
            weights[key] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        else:
            weights[key] = rng.normal(0, 0.1, shape).astype(np.float32)
    shared_spec.weights.save_weights(root / "w.safetensors", weights, spec)
    return root


def test_class_names_are_imagenets_1000():
    names = predict.class_names()
    assert len(names) == 1000 == len(set(names))
    assert names[0] == "tench" and names[1] == "goldfish" and names[999] == "toilet tissue"


def test_preprocessing_is_torchvisions_evaluation_transform(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    path = tmp_path / "flat.png"
    Image.new("RGB", (300, 200), (255, 128, 0)).save(path)
    x = predict.load_image(path, predict.pipeline(shared_spec.load("googlenet")))
    mean, std = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
    want = (np.array([255, 128, 0], np.float32) / 255 - mean) / std
    assert x.shape == (3, 224, 224) and np.allclose(x, want.reshape(3, 1, 1), atol=1e-6)


@pytest.mark.cross
def test_every_framework_gives_the_same_top5(files, capsys):
    code = main(["predict", str(files / "wide.png"), str(files / "tall_grey.jpg"), "--weights",
                 str(files / "w.safetensors"), "--framework", "all", "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)
    assert result["transform_input"] and result["top_identical"], result
    assert len(result["frameworks"]) >= 2 and max(result["max_abs_diff"].values()) <= 1e-4
    for entry in result["images"]:
        tops = {key: [t["class"] for t in top] for key, top in entry["top"].items()}
        assert len({tuple(v) for v in tops.values()}) == 1 and len(tops["torch"]) == 5


@pytest.mark.torch
def test_one_framework_prints_a_table_with_imagenet_names(files, capsys):
    pytest.importorskip("torch")
    code = main(["predict", str(files / "wide.png"), "--weights", str(files / "w.safetensors"), "--top", "3"])
    out, err = capsys.readouterr()
    assert code == 0, err
    names = set(predict.class_names())
    assert "PyTorch" in out and any(name in out for name in names)


def test_a_file_that_is_not_an_image_is_one_line_exit_2(files, tmp_path, capsys):
    path = tmp_path / "notes.png"
    path.write_text("not an image\n")
    code = main(["predict", str(path), "--weights", str(files / "w.safetensors")])
    _, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and str(path) in lines[0] and "not an image" in lines[0], err
