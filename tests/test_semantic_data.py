"""Semantic-map data: palette and map conversions, the two layouts, caption files, the dataset, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from delora_diffusion.data.ade20k import CLASS_NAMES, IGNORE_INDEX, PALETTE
from delora_diffusion.data.demo_scenes import write_scenes
from delora_diffusion.data.semantic import SemanticDataset
from delora_diffusion.data.semantic_files import SemanticDataError, find_pairs, read_captions
from delora_diffusion.data.semantic_maps import (
    MapError,
    annotation_ids,
    center_box,
    colorize,
    fit_map,
    label_ids,
    palette_lookup,
    read_palette,
)


def test_ade20k_table_and_palette_conversions():
    assert len(CLASS_NAMES) == len(PALETTE) == 150
    assert (CLASS_NAMES[0], PALETTE[0]) == ("wall", (120, 120, 120))
    assert (CLASS_NAMES[149], PALETTE[149]) == ("flag", (92, 0, 255))
    ids = np.array([[0, 5, 149], [IGNORE_INDEX, 20, 48]])
    colors = colorize(ids)
    assert tuple(colors[1, 0]) == (0, 0, 0)  # "other" is black
    back = palette_lookup(colors)
    assert back[0].tolist() == [0, 5, 149] and back[1, 0] == IGNORE_INDEX and back[1, 1] == 20
    assert back[1, 2] == 6  # skyscraper shares road's (140, 140, 140): a colour map reads the lower id
    assert palette_lookup(np.array([[[1, 2, 3]]], dtype=np.uint8))[0, 0] == IGNORE_INDEX
    # Annotations (0 = other, 1..150) follow mmseg's reduce_zero_label.
    assert annotation_ids(np.array([0, 1, 150, 151]), 150).tolist() == [IGNORE_INDEX, 0, 149, IGNORE_INDEX]
    annotation = Image.fromarray(np.array([[0, 1], [13, 150]], dtype=np.uint8), mode="L")
    assert label_ids(annotation).tolist() == [[IGNORE_INDEX, 0], [12, 149]]


def test_palette_files(tmp_path):
    text = tmp_path / "p.txt"
    text.write_text("# r g b name\n0 0 0 background\n255,0,0, red thing\n")
    assert read_palette(text) == (("background", "red thing"), ((0, 0, 0), (255, 0, 0)))
    as_json = tmp_path / "p.json"
    as_json.write_text(json.dumps([[1, 2, 3], {"name": "b", "color": [4, 5, 6]}]))
    assert read_palette(as_json) == (("class 0", "b"), ((1, 2, 3), (4, 5, 6)))
    bad = tmp_path / "bad.txt"
    bad.write_text("1 2 300\n")
    with pytest.raises(MapError, match="bad.txt: entry 0"):
        read_palette(bad)


def test_fit_map_keeps_the_centred_region_of_the_output_aspect():
    assert center_box(100, 50, 64, 64) == (25, 0, 75, 50)
    assert center_box(40, 80, 32, 32) == (0, 20, 40, 60)
    ids = np.zeros((50, 100), dtype=np.int64)
    ids[:, 25:75] = 2  # only the centre is sky
    fitted, box = fit_map(Image.fromarray(colorize(ids)), 16, 16)
    assert box == (25, 0, 75, 50) and fitted.size == (16, 16)
    assert set(map(tuple, np.asarray(fitted).reshape(-1, 3))) == {PALETTE[2]}


def test_generic_and_ade20k_layouts_with_captions(tmp_path):
    generic = write_scenes(tmp_path / "g", count=3, size=32)
    data = find_pairs(tmp_path / "g")
    assert data.layout == "generic" and [p.stem for p in data.pairs] == generic
    assert all(p.caption and p.caption.startswith("a scene of") for p in data.pairs)

    write_scenes(tmp_path / "a", count=3, size=32, layout="ade20k", annotations=True)
    ade = find_pairs(tmp_path / "a")
    assert ade.layout == "ade20k" and ade.captions_file.name == "prompt_training_blip.json"
    assert ade.pairs[0].stem == "ADE_train_00000001" and ade.pairs[0].map.parent.name == "training"
    assert ade.missing_captions == 0

    # A missing caption trains with the empty prompt and is counted.
    captions = tmp_path / "g" / "captions.jsonl"
    captions.write_text("\n".join(captions.read_text().splitlines()[1:]) + "\n")
    data = find_pairs(tmp_path / "g")
    assert data.missing_captions == 1 and data.pairs[0].prompt == ""


def test_caption_file_formats(tmp_path):
    lines = tmp_path / "blip.json"  # JSON lines despite the suffix, as the BLIP caption files
    lines.write_text('{"source": "source/x.png", "target": "target/x.jpg", "prompt": "a room"}\n')
    assert read_captions(lines) == {"x": "a room"}
    mapping = tmp_path / "c.json"
    mapping.write_text(json.dumps({"y.jpg": "a street", "z": "a beach"}))
    assert read_captions(mapping) == {"y": "a street", "z": "a beach"}
    listed = tmp_path / "l.json"
    listed.write_text(json.dumps([{"file_name": "w.png", "caption": "a lake"}]))
    assert read_captions(listed) == {"w": "a lake"}
    broken = tmp_path / "b.jsonl"
    broken.write_text('{"file_name": "a.png", "text": "ok"}\n{"file_name": "b.png"}\n')
    with pytest.raises(SemanticDataError, match=r"b.jsonl:2: expected a file name .* and a caption"):
        read_captions(broken)


@pytest.mark.parametrize("case", ["no_map", "no_image", "size", "duplicate", "no_maps_dir"])
def test_bad_data_is_an_error_naming_the_file(case, tmp_path):
    root = tmp_path / "d"
    write_scenes(root, count=2, size=32)
    if case == "no_map":
        (root / "maps" / "scene_0001.png").unlink()
        expected = r"image .*scene_0001.png has no map: expected .*maps/scene_0001.png"
    elif case == "no_image":
        (root / "images" / "scene_0001.png").unlink()
        expected = r"map .*scene_0001.png has no image"
    elif case == "size":
        Image.new("RGB", (32, 24)).save(root / "maps" / "scene_0001.png")
        expected = r"map .*maps/scene_0001.png is 32×24 but its image .*scene_0001.png is 32×32"
    elif case == "duplicate":
        Image.new("RGB", (32, 32)).save(root / "images" / "scene_0001.jpg")
        expected = r"two files for 'scene_0001'"
    else:
        (root / "maps").rename(root / "elsewhere")
        expected = r"no maps found: expected .*/maps/"
    with pytest.raises(SemanticDataError, match=expected):
        find_pairs(root)


def test_dataset_crops_and_flips_image_and_map_together(tmp_path):
    root = tmp_path / "d"
    (root / "images").mkdir(parents=True)
    (root / "maps").mkdir()
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 150, size=(32, 48))
    colors = colorize(ids)
    # The "photo" is the colour map itself, so image and map must come out pixel for pixel the same.
    Image.fromarray(colors).save(root / "images" / "a.png")
    Image.fromarray(colors).save(root / "maps" / "a.png")
    data = find_pairs(root)
    dataset = SemanticDataset(data.pairs, resolution=32, center_crop=False, random_flip=True, seed=3)
    views = set()
    for epoch in range(6):
        dataset.set_epoch(epoch)
        item = dataset[0]
        assert item["pixel_values"].shape == item["control_image"].shape == (3, 32, 32)
        assert torch.allclose(item["pixel_values"] * 0.5 + 0.5, item["control_image"], atol=1e-6)
        views.add(dataset.view(0, 48, 32))
    assert len(views) > 1  # crops and flips do vary between epochs
    dataset.set_epoch(2)
    assert torch.equal(dataset[0]["control_image"], dataset[0]["control_image"])  # a function of (seed, epoch, item)
