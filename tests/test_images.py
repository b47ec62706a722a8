"""The one image-decoding rule (delora_diffusion/images.py), as training and evaluation both use it."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from delora_diffusion.data.dreambooth import ImageSet
from delora_diffusion.evaluation.images import load_rgb
from delora_diffusion.images import decode_rgb, list_image_files


def test_a_16_bit_png_keeps_its_shades(tmp_path):
    ramp = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1024).astype(np.uint16)  # 0 .. 64512
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode.startswith("I")
    decoded = decode_rgb(path)
    pixels = np.asarray(decoded.image)
    assert decoded.high_bit_depth and pixels.shape == (8, 8, 3)
    assert np.abs(pixels[..., 0].astype(int) - np.rint(ramp / 257.0)).max() <= 1  # not all 255
    assert np.array_equal(np.asarray(load_rgb(path)), pixels)  # evaluation reads it the same way


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_transparency_is_composited_on_white(tmp_path, mode):
    rgba = np.zeros((4, 4, 4), np.uint8)  # hidden colour black, fully transparent ...
    rgba[:2, :, :] = (200, 0, 0, 255)  # ... except an opaque red top half
    image = Image.fromarray(rgba, "RGBA")
    if mode == "LA":
        image = image.convert("LA")
    elif mode == "P":
        image = Image.fromarray(rgba[..., :3]).convert("P")
        image.info["transparency"] = image.getpixel((0, 3))
    path = tmp_path / f"cut-out-{mode}.png"
    image.save(path, **({"transparency": image.info["transparency"]} if mode == "P" else {}))
    decoded = decode_rgb(path)
    pixels = np.asarray(decoded.image)
    assert decoded.had_alpha
    assert (pixels[3, 0] == 255).all()  # the transparent half is white, not its hidden black
    assert pixels[0, 0, 0] > 50  # the opaque half keeps its colour


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (30, 60))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    path = tmp_path / "phone.jpg"
    image.save(path, exif=exif)
    assert decode_rgb(path).image.size == (60, 30)
    assert load_rgb(path).size == (60, 30)


def test_listing_reports_folders_named_like_images(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "b.png").mkdir()
    (tmp_path / ".c.png.tmp.png").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("x")
    assert list_image_files(tmp_path) == ([tmp_path / "a.png"], [tmp_path / "b.png"])


def test_the_training_set_says_once_what_decoding_changed(tmp_path):
    Image.new("RGBA", (64, 64), (0, 0, 0, 0)).save(tmp_path / "alpha.png")
    Image.fromarray(np.full((64, 64), 40000, np.uint16)).save(tmp_path / "deep.png")
    Image.new("RGB", (1, 1)).save(tmp_path / "tiny.png")
    (tmp_path / "folder.png").mkdir()
    images = ImageSet.load(tmp_path, "p", 32, "instance_data_dir")
    text = "\n".join(images.notes)
    assert len(images.notes) == 4, text
    assert "1 named like images but not files, skipped: folder.png" in text
    assert "1 with transparency, composited on white: alpha.png" in text
    assert "1 16/32-bit, scaled to 8 bits: deep.png" in text
    assert "upscaled: tiny.png" in text
    white = np.asarray(images.images[images.paths.index(tmp_path / "alpha.png")])
    assert (white == 255).all()


def test_the_background_is_a_flag(tmp_path, capsys):
    from delora_diffusion.training.dreambooth import dreambooth_parser

    Image.new("RGBA", (32, 32), (0, 0, 0, 0)).save(tmp_path / "alpha.png")
    base = ["--pretrained_model_name_or_path", "m"]
    args = dreambooth_parser().parse_args([*base, "--alpha_background", "#102030"])
    images = ImageSet.load(tmp_path, "p", 32, "instance_data_dir", background=args.alpha_background)
    assert np.asarray(images.images[0])[0, 0].tolist() == [16, 32, 48]
    assert "composited on #102030" in images.notes[0]
    assert dreambooth_parser().parse_args(base).alpha_background == (255, 255, 255)
    with pytest.raises(SystemExit):
        dreambooth_parser().parse_args([*base, "--alpha_background", "blurple"])
    assert "not a colour: 'blurple'" in capsys.readouterr().err
