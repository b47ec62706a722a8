"""Bad input: clear errors naming the file, folder, subject or flag; the CLI exits 2 without a traceback."""

from __future__ import annotations

import json

import pytest
from eval_helpers import make_generated, make_real

from delora_diffusion.evaluation import DreamBoothEvalSettings, EvaluationInputError, evaluate_dreambooth
from delora_diffusion.evaluation.cli import main


@pytest.fixture
def folders(tmp_path):
    make_real(tmp_path / "real", {"dog": 2, "vase": 1})
    make_generated(tmp_path / "gen", "dog", "dog", {0: 2})
    return tmp_path / "real", tmp_path / "gen"


def _evaluate(real, gen, tiny_dino="unused-dino", tiny_clip="unused-clip", **kwargs):
    return evaluate_dreambooth(
        DreamBoothEvalSettings(
            real_dir=real,
            generated_dir=gen,
            dino_model=str(tiny_dino),
            clip_model=str(tiny_clip),
            progress=False,
            **kwargs,
        )
    )


def test_unreadable_image_is_named(folders, tiny_dino, tiny_clip, capsys):
    real, gen = folders
    broken = gen / "dog" / "00" / "101.png"
    broken.write_bytes(b"\x89PNG but not really")
    with pytest.raises(EvaluationInputError, match=r"cannot read image .*101\.png"):
        _evaluate(real, gen, tiny_dino, tiny_clip)
    code = main(
        [
            "dreambooth",
            "--real_dir",
            str(real),
            "--generated_dir",
            str(gen),
            "--dino_model",
            str(tiny_dino),
            "--clip_model",
            str(tiny_clip),
            "--no_cache",
            "--no_progress",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "delora-eval: error:" in err and str(broken) in err and "Traceback" not in err


def test_empty_generated_folder(tmp_path):
    make_real(tmp_path / "real", {"dog": 1})
    (tmp_path / "gen").mkdir()
    with pytest.raises(EvaluationInputError, match=r"--generated_dir .*gen: no subject folders"):
        _evaluate(tmp_path / "real", tmp_path / "gen")
    (tmp_path / "gen" / "dog" / "00").mkdir(parents=True)
    with pytest.raises(EvaluationInputError, match=r"gen/dog: no generated images"):
        _evaluate(tmp_path / "real", tmp_path / "gen")


def test_subject_without_real_images(folders):
    real, gen = folders
    for photo in (real / "dog").iterdir():
        photo.unlink()
    with pytest.raises(EvaluationInputError, match=r"subject 'dog' has no real images in .*real/dog"):
        _evaluate(real, gen)


def test_generated_subject_missing_from_real(folders):
    real, gen = folders
    make_generated(gen, "teapot", "teapot", {0: 1})
    with pytest.raises(EvaluationInputError, match=r"generated subject 'teapot' has no folder in --real_dir"):
        _evaluate(real, gen)


def test_unknown_subject_flag(folders):
    real, gen = folders
    with pytest.raises(EvaluationInputError, match=r"--subjects cat: not in --generated_dir .*\(it has: dog\)"):
        _evaluate(real, gen, subjects=["dog", "cat"])


def test_bad_metadata_lines_are_named_with_line_numbers(folders):
    real, gen = folders
    metadata = gen / "dog" / "metadata.jsonl"
    lines = metadata.read_text().splitlines()
    metadata.write_text(lines[0] + "\n{not json\n")
    with pytest.raises(EvaluationInputError, match=r"metadata.jsonl:2: not a JSON object"):
        _evaluate(real, gen)
    metadata.write_text(lines[0] + "\n" + json.dumps({"subject": "dog", "file": "00/999.png"}) + "\n")
    with pytest.raises(EvaluationInputError, match=r"lists 00/999.png, but .*999.png does not exist"):
        _evaluate(real, gen)
    metadata.write_text(json.dumps({"subject": "cat", "file": "00/100.png"}) + "\n")
    with pytest.raises(EvaluationInputError, match=r"metadata.jsonl:1: subject 'cat' does not match its folder 'dog'"):
        _evaluate(real, gen)


def test_missing_prompts_need_a_class_noun(tmp_path):
    make_real(tmp_path / "real", {"dog": 1})
    make_generated(tmp_path / "gen", "dog", "dog", {0: 1}, metadata=False)
    with pytest.raises(EvaluationInputError, match=r"no class noun for subject 'dog' \(add it to --class_nouns"):
        _evaluate(tmp_path / "real", tmp_path / "gen")


def test_cli_flag_errors_exit_2(folders, tmp_path, capsys):
    real, gen = folders
    with pytest.raises(SystemExit) as exit_info:
        main(["dreambooth", "--generated_dir", str(gen)])
    assert exit_info.value.code == 2 and "required: --real_dir" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["dreambooth", "--real_dir", str(real), "--generated_dir", str(gen), "--protocol", "dino"])
    assert exit_info.value.code == 2
    assert main(["dreambooth", "--real_dir", str(tmp_path / "nowhere"), "--generated_dir", str(gen)]) == 2
    assert "--real_dir" in capsys.readouterr().err
    (tmp_path / "not_results.json").write_text("{}")
    assert main(["compare", str(tmp_path / "not_results.json")]) == 2
    assert "not_results.json: not a delora-eval results file" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flags,says",
    [
        (["--out", "{tmp}"], "--out {tmp} is a folder; give a file name"),
        (["--out", "{file}/results.json"], "--out {file}/results.json is inside {file}, which is a file"),
        (["--plot", "{tmp}"], "--plot {tmp} is a folder; give a file name"),
    ],
)
def test_unwritable_outputs_stop_before_any_scoring(folders, tmp_path, capsys, monkeypatch, flags, says):
    import delora_diffusion.evaluation.dreambooth as dreambooth

    def never(settings):
        raise AssertionError("scored although the results could not be written")

    monkeypatch.setattr(dreambooth, "evaluate_dreambooth", never)
    real, gen = folders
    (tmp_path / "a_file").write_text("")
    fill = {"tmp": str(tmp_path), "file": str(tmp_path / "a_file")}
    argv = ["dreambooth", "--real_dir", str(real), "--generated_dir", str(gen)]
    assert main(argv + [f.format(**fill) for f in flags]) == 2
    assert says.format(**fill) in capsys.readouterr().err
