"""generate.py end to end on the tiny model: layout and metadata contract, resume, subjects, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from adapter_files import make_adapter_file
from PIL import Image

from delora_diffusion.data.prompts import OBJECT_PROMPTS, fill
from delora_diffusion.inference.generate import main
from delora_diffusion.models.loading import load_unet

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--num_inference_steps", "1", "--height", "32", "--width", "32", "--no_progress"]
CONTRACT_FIELDS = {
    "subject",
    "prompt_index",
    "prompt",
    "class_prompt",
    "token",
    "class_noun",
    "seed",
    "file",
    "adapter",
    "scale",
    "base_model",
    "num_inference_steps",
    "guidance_scale",
    "scheduler",
}


@pytest.fixture(scope="module")
def adapter_file(tiny_sd, tmp_path_factory):
    return make_adapter_file(
        load_unet(str(tiny_sd)), tmp_path_factory.mktemp("cli_adapter") / "adapter.safetensors", base_model=str(tiny_sd)
    )


@pytest.fixture
def prompt_file(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("a {token} {class_noun} in the snow\na red {token} {class_noun}\n")
    return path


def run(*args) -> int:
    """main() as the shell sees it: argparse errors exit 2 too."""
    try:
        return main([str(a) for a in args])
    except SystemExit as exc:
        return exc.code


def metadata(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]


def image(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path), dtype=np.int16)


def test_dreambooth_prompt_set_layout_and_metadata(tiny_sd, adapter_file, tmp_path, capsys):
    out = tmp_path / "out"
    code = run(
        "--pretrained_model_name_or_path",
        tiny_sd,
        "--adapter",
        adapter_file,
        "--subject",
        "backpack",
        "--class_noun",
        "backpack",
        "--output_dir",
        out,
        "--num_images_per_prompt",
        1,
        "--seed",
        1234,
        "--batch_size",
        5,
        *FAST,
    )
    assert code == 0
    assert "25 generated" in capsys.readouterr().out
    folder = out / "backpack"
    records = metadata(folder)
    assert len(records) == 25
    assert sorted(p.name for p in folder.iterdir()) == [f"{i:02d}" for i in range(25)] + [
        "contact_sheet.png",
        "metadata.jsonl",
    ]
    sheet = Image.open(folder / "contact_sheet.png")
    assert sheet.size == (5 * 192, 5 * (192 + 42))  # 25 prompts, 5 columns, each image over its prompt
    for index, (record, template) in enumerate(zip(records, OBJECT_PROMPTS)):
        assert set(record) >= CONTRACT_FIELDS
        assert record["prompt_index"] == index and record["seed"] == 1234
        assert record["file"] == f"{index:02d}/1234.png"
        assert record["prompt"] == fill(template, "sks", "backpack")
        assert record["class_prompt"] == fill(template, None, "backpack") and "sks" not in record["class_prompt"]
        assert (record["subject"], record["token"], record["class_noun"]) == ("backpack", "sks", "backpack")
        assert record["adapter"] == str(adapter_file) and record["adapter_method"] == "delora"
        assert record["scale"] == 1.0 and record["base_model"] == str(tiny_sd)
        assert (record["num_inference_steps"], record["guidance_scale"], record["scheduler"]) == (1, 7.5, "dpmsolver++")
        png = Image.open(folder / record["file"])
        assert png.size == (32, 32) and json.loads(png.text["delora_diffusion"])["seed"] == 1234
        assert png.text["parameters"] == (
            f"{record['prompt']}\nSteps: 1, Sampler: DPM++ 2M, CFG scale: 7.5, "
            f"Seed: 1234, Size: 32x32, Model: {Path(tiny_sd).name}, "
            f"Adapter: {Path(adapter_file).name}:1"
        )  # what A1111 / ComfyUI show
    assert not list(out.rglob(".*tmp*")), "no temporary files left behind"


def test_yaml_config_supplies_flags_and_flags_win(tiny_sd, prompt_file, tmp_path, capsys):
    config = tmp_path / "gen.yaml"
    config.write_text(
        f"pretrained_model_name_or_path: {tiny_sd}\nsubject: vase\nclass_noun: vase\n"
        f"prompt_file: {prompt_file}\nnum_images_per_prompt: 3\noutput_dir: {tmp_path / 'yaml'}\n"
    )
    assert run("--config", config, "--num_images_per_prompt", 1, *FAST) == 0
    assert len(metadata(tmp_path / "yaml" / "vase")) == 2  # 2 prompts × 1 image: the flag beat the file
    config.write_text("num_images_per_promt: 3\n")
    assert run("--config", config) == 2
    assert "unknown key 'num_images_per_promt' (did you mean 'num_images_per_prompt'?)" in capsys.readouterr().err


def test_resume_skips_existing_and_guards_settings(tiny_sd, prompt_file, tmp_path, capsys):
    out = tmp_path / "out"
    args = [
        "--pretrained_model_name_or_path",
        tiny_sd,
        "--subject",
        "dog",
        "--class_noun",
        "dog",
        "--output_dir",
        out,
        "--prompt_file",
        prompt_file,
        "--num_images_per_prompt",
        2,
        "--seed",
        10,
        *FAST,
    ]
    assert run(*args) == 0
    folder = out / "dog"
    files = sorted(folder.glob("*/*.png"))
    assert [f.relative_to(folder).as_posix() for f in files] == ["00/10.png", "00/11.png", "01/10.png", "01/11.png"]
    assert all(r["adapter"] is None and r["adapter_sha256"] is None for r in metadata(folder))
    stamps = {f: f.stat().st_mtime_ns for f in files}
    capsys.readouterr()

    assert run(*args) == 0  # nothing left to do
    assert "0 generated, 4 kept" in capsys.readouterr().out
    assert {f: f.stat().st_mtime_ns for f in files} == stamps

    (folder / "00/11.png").write_bytes((folder / "00/11.png").read_bytes()[:-30])  # truncated by a crash
    (folder / "01/10.png").write_bytes(b"")  # or never written
    assert run(*args) == 0
    assert "2 generated, 2 kept" in capsys.readouterr().out
    assert all(Image.open(f).load() is not None for f in files)
    stamps = {f: f.stat().st_mtime_ns for f in files}

    (folder / "01/11.png").unlink()  # a lost image, and a record lost in a crash before the metadata write
    (folder / "metadata.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in metadata(folder) if r["file"] != "00/10.png")
    )
    assert run(*args, "--num_images_per_prompt", 3) == 0  # also asks for one more seed per prompt
    assert "(4 generated, 2 kept" in capsys.readouterr().out  # 00/10 and 01/11 again, 00/12 and 01/12 new
    records = metadata(folder)
    assert [r["file"] for r in records] == [
        "00/10.png",
        "00/11.png",
        "00/12.png",
        "01/10.png",
        "01/11.png",
        "01/12.png",
    ]
    assert (folder / "00/11.png").stat().st_mtime_ns == stamps[folder / "00/11.png"]
    assert (folder / "00/10.png").stat().st_mtime_ns != stamps[folder / "00/10.png"]

    assert run(*args, "--guidance_scale", 3.0) == 2  # other settings: refuse to mix them into the folder
    assert "guidance_scale: 7.5 -> 3.0" in capsys.readouterr().err
    assert run(*args, "--guidance_scale", 3.0, "--overwrite") == 0
    assert "4 generated" in capsys.readouterr().out
    assert sorted({r["guidance_scale"] for r in metadata(folder) if r["seed"] < 12}) == [3.0]


def test_scale_zero_adapter_gives_the_base_images(tiny_sd, adapter_file, prompt_file, tmp_path):
    common = [
        "--pretrained_model_name_or_path",
        tiny_sd,
        "--subject",
        "dog",
        "--class_noun",
        "dog",
        "--prompt_file",
        prompt_file,
        "--num_images_per_prompt",
        2,
        *FAST,
    ]
    assert run(*common, "--output_dir", tmp_path / "base") == 0
    assert run(*common, "--output_dir", tmp_path / "zero", "--adapter", adapter_file, "--scale", 0) == 0
    assert run(*common, "--output_dir", tmp_path / "merged", "--adapter", adapter_file, "--merge") == 0
    for record in metadata(tmp_path / "zero" / "dog"):
        assert record["scale"] == 0.0 and record["adapter"] == str(adapter_file)
        np.testing.assert_array_equal(
            image(tmp_path / "zero/dog" / record["file"]), image(tmp_path / "base/dog" / record["file"])
        )
    assert all(r["merged"] for r in metadata(tmp_path / "merged" / "dog"))


def test_several_subjects_from_a_class_table(tiny_sd, tmp_path, prompt_file):
    adapters = tmp_path / "adapters"
    for seed, subject in enumerate(["dog", "teapot"]):
        make_adapter_file(load_unet(str(tiny_sd)), adapters / f"{subject}.safetensors", str(tiny_sd), seed=seed)
    table = tmp_path / "classes.csv"
    table.write_text("subject_name,class\ndog,dog\nteapot,teapot\ncat,cat\n")
    out = tmp_path / "out"
    code = run(
        "--pretrained_model_name_or_path",
        tiny_sd,
        "--subjects",
        "dog,teapot",
        "--class_nouns",
        table,
        "--adapter",
        f"{adapters}/{{subject}}.safetensors",
        "--output_dir",
        out,
        "--prompt_file",
        prompt_file,
        "--num_images_per_prompt",
        1,
        *FAST,
    )
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["dog", "teapot"]
    teapot = metadata(out / "teapot")
    assert [r["prompt"] for r in teapot] == ["a sks teapot in the snow", "a red sks teapot"]
    assert teapot[0]["adapter"] == f"{adapters}/teapot.safetensors"
    assert metadata(out / "dog")[0]["adapter_sha256"] != teapot[0]["adapter_sha256"]


def test_dreambooth_dataset_table_lists_all_subjects(dreambooth_dataset, monkeypatch):
    from delora_diffusion.inference import generate

    args = generate.dreambooth_parser().parse_args(
        [
            "--pretrained_model_name_or_path",
            "x",
            "--subjects",
            "all",
            "--class_nouns",
            str(dreambooth_dataset),
            "--output_dir",
            "unused",
        ]
    )
    jobs = {job.subject: job for job in generate.build_jobs(args)}
    assert len(jobs) == 30
    assert jobs["dog3"].prompts[14].prompt == "a sks dog in a chef outfit"  # live prompts for pets
    assert (
        jobs["bear_plushie"].prompts[15].prompt
        == "a sks stuffed animal on top of green grass with sunflowers around it"
    )


@pytest.mark.parametrize(
    "case",
    [
        "missing_adapter",
        "other_base",
        "bad_prompt_file",
        "bad_subject",
        "scale_alone",
        "unknown_subject",
        "no_class_noun",
        "output_is_a_file",
        "zero_threads",
    ],
)
def test_user_errors_exit_2_with_a_clear_message(case, tiny_sd, tmp_path, capsys):
    base = ["--pretrained_model_name_or_path", tiny_sd, "--output_dir", tmp_path / "out", *FAST]
    dog = ["--subject", "dog", "--class_noun", "dog"]
    if case == "missing_adapter":
        args, message = [*base, *dog, "--adapter", tmp_path / "gone.safetensors"], "gone.safetensors does not exist"
    elif case == "other_base":
        from diffusers import UNet2DConditionModel

        other = UNet2DConditionModel(
            sample_size=8,
            block_out_channels=(16, 32),
            layers_per_block=1,
            norm_num_groups=8,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=24,
            attention_head_dim=8,
        )
        path = make_adapter_file(other, tmp_path / "other.safetensors", base_model="some/other-model")
        args, message = [*base, *dog, "--adapter", path], "trained on 'some/other-model'.*wrong base model"
    elif case == "bad_prompt_file":
        (tmp_path / "p.txt").write_text("a {sks} dog\n")
        args, message = [*base, *dog, "--prompt_file", tmp_path / "p.txt"], r"p.txt:1: unknown placeholder \{sks\}"
    elif case == "bad_subject":
        args, message = [*base, "--subject", "../dog", "--class_noun", "dog"], "subject name '../dog'"
    elif case == "scale_alone":
        args, message = [*base, *dog, "--scale", 0.5], "--scale and --merge act on an adapter"
    elif case == "unknown_subject":
        (tmp_path / "c.csv").write_text("dog,dog\n")
        args, message = [*base, "--subjects", "dog,cow", "--class_nouns", tmp_path / "c.csv"], "cow not in .*c.csv"
    elif case == "zero_threads":
        args, message = [*base, *dog, "--num_threads", 0], "--num_threads: must be >= 1, got 0"
    elif case == "output_is_a_file":
        (tmp_path / "taken").write_text("")
        args, message = [*base, *dog, "--output_dir", tmp_path / "taken"], "taken is a file, not a folder"
    else:
        args, message = [*base, "--subject", "dog"], "--subject needs --class_noun"
    assert run(*args) == 2
    err = capsys.readouterr().err
    assert "generate.py: error:" in err
    assert __import__("re").search(message, err), err
    assert not (tmp_path / "out" / "dog").exists() or not list((tmp_path / "out" / "dog").rglob("*.png"))


def test_root_script_subcommand_and_no_traceback(tiny_sd, tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("generate_entry", ROOT / "generate.py")
    root_entry = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(root_entry)  # importable without running: the thin entry only wires main
    assert root_entry.main is main
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "generate.py"),
            "dreambooth",
            "--pretrained_model_name_or_path",
            str(tiny_sd),
            "--subject",
            "dog",
            "--class_noun",
            "dog",
            "--adapter",
            str(tmp_path / "gone.safetensors"),
            "--output_dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("generate.py dreambooth: error:") and "Traceback" not in result.stderr


def test_prompt_file_lines_without_placeholders_are_warned_about(tmp_path, capsys):
    from delora_diffusion.inference import generate

    (tmp_path / "p.txt").write_text("a {token} {class_noun} in the snow\na photo of a dog on the beach\n")
    args = generate.dreambooth_parser().parse_args(
        [
            "--pretrained_model_name_or_path",
            "x",
            "--subject",
            "dog",
            "--class_noun",
            "dog",
            "--prompt_file",
            str(tmp_path / "p.txt"),
            "--output_dir",
            "unused",
        ]
    )
    jobs = generate.build_jobs(args)
    assert [p.prompt for p in jobs[0].prompts] == ["a sks dog in the snow", "a photo of a dog on the beach"]
    err = capsys.readouterr().err
    assert "1 line(s) have neither {token} nor {class_noun}" in err and "a photo of a dog on the beach" in err


def test_prompt_flag_renders_the_given_prompts_into_one_folder(tiny_sd, adapter_file, tmp_path, capsys):
    out = tmp_path / "out"
    code = run(
        "--pretrained_model_name_or_path",
        tiny_sd,
        "--adapter",
        adapter_file,
        "--output_dir",
        out,
        "--prompt",
        "a photo of a red cup",
        "--prompt",
        "a {token} {class_noun} on the moon",
        "--class_noun",
        "cup",
        "--num_images_per_prompt",
        1,
        *FAST,
    )
    assert code == 0
    records = metadata(out / "prompts")
    assert [r["prompt"] for r in records] == ["a photo of a red cup", "a sks cup on the moon"]
    assert [r["class_prompt"] for r in records] == ["a photo of a red cup", "a cup on the moon"]
    assert all((out / "prompts" / r["file"]).is_file() for r in records)
    assert Image.open(out / "prompts" / "contact_sheet.png").size == (2 * 192, 192 + 42)  # two prompts, two columns


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--prompt", "a {token} {class_noun}"], "give --class_noun"),
        (["--prompt", "a cup", "--prompt_set", "live"], "one of --prompt"),
        (["--prompt", "a cup", "--subjects", "a,b"], "not --subjects"),
        ([], "or --prompt"),
    ],
)
def test_prompt_flag_errors(tiny_sd, tmp_path, capsys, extra, message):
    assert run("--pretrained_model_name_or_path", tiny_sd, "--output_dir", tmp_path / "o", *extra, *FAST) == 2
    assert message in capsys.readouterr().err


def test_prompt_with_stray_braces_is_a_clear_error(tiny_sd, tmp_path, capsys):
    assert (
        run(
            "--pretrained_model_name_or_path",
            tiny_sd,
            "--output_dir",
            tmp_path / "o",
            "--prompt",
            "a {colour} cup",
            *FAST,
        )
        != 0
    )
    assert "--prompt 'a {colour} cup'" in capsys.readouterr().err
