"""Trainer flags: diffusers' names, --config YAML, explicit flags over the file, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from delora_diffusion.configfile import parse_args
from delora_diffusion.training.args import PAPER_LEARNING_RATES, apply_method_defaults
from delora_diffusion.training.dreambooth import build_args, dreambooth_parser, main

DIFFUSERS_FLAGS = [
    "--pretrained_model_name_or_path",
    "--revision",
    "--variant",
    "--instance_data_dir",
    "--instance_prompt",
    "--class_data_dir",
    "--class_prompt",
    "--with_prior_preservation",
    "--prior_loss_weight",
    "--num_class_images",
    "--sample_batch_size",
    "--resolution",
    "--center_crop",
    "--random_flip",
    "--train_batch_size",
    "--max_train_steps",
    "--num_train_epochs",
    "--learning_rate",
    "--scale_lr",
    "--lr_scheduler",
    "--lr_warmup_steps",
    "--gradient_accumulation_steps",
    "--gradient_checkpointing",
    "--max_grad_norm",
    "--mixed_precision",
    "--seed",
    "--output_dir",
    "--logging_dir",
    "--report_to",
    "--checkpointing_steps",
    "--checkpoints_total_limit",
    "--resume_from_checkpoint",
    "--validation_prompt",
    "--num_validation_images",
    "--validation_steps",
    "--snr_gamma",
    "--dataloader_num_workers",
    "--adapter",
    "--rank",
    "--target_modules",
    "--adapter_init",
    "--delora_lambda",
    "--lambda_learning_rate",
    "--lambda_weight_decay",
    "--lora_alpha",
    "--ether_blocks",
    "--adam_weight_decay",
    "--config",
]


SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"  # runwayml's copy was deleted from the hub in 2024


def write(path, text):
    path.write_text(text)
    return str(path)


def test_every_flag_of_the_issue_exists():
    options = {s for a in dreambooth_parser()._actions for s in a.option_strings}
    assert set(DIFFUSERS_FLAGS) <= options, sorted(set(DIFFUSERS_FLAGS) - options)


def test_yaml_values_are_typed_and_explicit_flags_override(tmp_path):
    config = write(
        tmp_path / "c.yaml",
        """
pretrained_model_name_or_path: some/model
instance_data_dir: data/dog
instance_prompt: a photo of sks dog
adapter: lora
rank: 8
learning_rate: 6e-4            # PyYAML reads this as a string; argparse's float() takes it
with_prior_preservation: true
center_crop: true
mixed_precision: no            # YAML 1.1 boolean false, meant as the choice "no"
validation_prompt: [a sks dog, a sks dog in the snow]
target_modules: to_q
""",
    )
    args = parse_args(
        dreambooth_parser(),
        ["--config", config, "--rank", "32", "--no_center_crop", "--validation_prompt", "only this"],
    )
    assert args.adapter == "lora" and args.learning_rate == pytest.approx(6e-4)
    assert args.rank == 32  # flag over file
    assert args.center_crop is False  # --no_x turns off a file's true
    assert args.with_prior_preservation is True
    assert args.mixed_precision == "no"
    assert args.validation_prompt == ["only this"]
    assert args.target_modules == ["to_q"]
    assert args.config == config


@pytest.mark.parametrize(
    "text, expected",
    [
        ("learning_rte: 1e-4\n", "unknown key 'learning_rte' (did you mean 'learning_rate'?)"),
        ("rank: sixteen\n", "key 'rank': argument --rank: invalid int value: 'sixteen'"),
        ("adapter: vera\n", "key 'adapter': argument --adapter: invalid choice: 'vera'"),
        ("center_crop: maybe\n", "key 'center_crop' must be true or false"),
        ("rank: [1, 2]\n", "key 'rank' takes one value"),
        ("- a\n- b\n", "expected a mapping"),
    ],
)
def test_bad_yaml_is_an_error_naming_file_and_key(tmp_path, capsys, text, expected):
    config = write(tmp_path / "bad.yaml", text)
    with pytest.raises(SystemExit) as exc:
        parse_args(dreambooth_parser("train_dreambooth.py"), ["--config", config])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "train_dreambooth.py: error:" in err and config in err and expected in err


def test_a_key_given_twice_is_an_error_naming_key_and_lines(tmp_path, capsys):
    config = write(tmp_path / "dup.yaml", "rank: 4\nadapter: lora\nrank: 8\n")
    with pytest.raises(SystemExit):
        parse_args(dreambooth_parser("train_dreambooth.py"), ["--config", config])
    assert f"{config}: key 'rank' is given twice (lines 1 and 3)" in capsys.readouterr().err


def test_config_given_twice_is_an_error(tmp_path, capsys):
    a, b = write(tmp_path / "a.yaml", "rank: 4\n"), write(tmp_path / "b.yaml", "rank: 8\n")
    with pytest.raises(SystemExit):
        parse_args(dreambooth_parser(), ["--config", a, "--config", b])
    assert "--config is given 2 times" in capsys.readouterr().err


def test_a_range_error_from_the_file_names_file_and_key(tmp_path, capsys):
    base = ["--pretrained_model_name_or_path", "m", "--instance_data_dir", "d", "--instance_prompt", "p"]
    config = write(tmp_path / "c.yaml", "rank: -4\n")
    with pytest.raises(SystemExit):
        build_args(["--config", config, *base])
    assert f"--rank must be >= 1, got -4 (from {config}, key 'rank')" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # the same value on the command line: nothing to point at
        build_args(["--config", config, *base, "--rank", "-5"])
    err = capsys.readouterr().err
    assert "--rank must be >= 1, got -5" in err and "(from" not in err


@pytest.mark.parametrize("argv", [["--max_train", "3"], ["--learning", "1e-4"]])
def test_abbreviated_flags_are_refused(capsys, argv):
    with pytest.raises(SystemExit):
        parse_args(dreambooth_parser(), ["--pretrained_model_name_or_path", "m", *argv])
    assert "unrecognized arguments" in capsys.readouterr().err


def test_every_command_refuses_abbreviations():
    import ast

    root = Path(__file__).resolve().parents[1]
    missing = []
    for path in [*root.joinpath("delora_diffusion").rglob("*.py"), *root.joinpath("bench").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            name = getattr(node, "func", None) and getattr(node.func, "attr", getattr(node.func, "id", None))
            if name in ("ArgumentParser", "add_parser") and not any(
                k.arg == "allow_abbrev" and getattr(k.value, "value", None) is False for k in node.keywords
            ):
                missing.append(f"{path.relative_to(root)}:{node.lineno}")
    assert not missing, missing


def test_missing_config_file(tmp_path, capsys):
    with pytest.raises(SystemExit):
        parse_args(dreambooth_parser(), ["--config", str(tmp_path / "nope.yaml")])
    assert "does not exist" in capsys.readouterr().err


def test_method_defaults_come_from_the_papers():
    for method, lr in PAPER_LEARNING_RATES.items():
        args = dreambooth_parser().parse_args(["--adapter", method])
        filled = apply_method_defaults(args)
        assert args.learning_rate == lr and filled
        assert (args.lambda_learning_rate == 1e-3) == (method == "delora")
        assert args.adam_weight_decay == (0.0 if method.startswith("ether") else 1e-2)
    args = dreambooth_parser().parse_args(["--learning_rate", "1e-4", "--adam_weight_decay", "0.5"])
    apply_method_defaults(args)
    assert args.learning_rate == 1e-4 and args.adam_weight_decay == 0.5


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "--pretrained_model_name_or_path is required"),
        (["--pretrained_model_name_or_path", "m"], "--instance_data_dir is required"),
        (["--pretrained_model_name_or_path", "m", "--instance_data_dir", "d"], "--instance_prompt is required"),
        (
            [
                "--pretrained_model_name_or_path",
                "m",
                "--instance_data_dir",
                "d",
                "--instance_prompt",
                "p",
                "--with_prior_preservation",
            ],
            "needs --class_prompt",
        ),
        (
            [
                "--pretrained_model_name_or_path",
                "m",
                "--instance_data_dir",
                "d",
                "--instance_prompt",
                "p",
                "--resolution",
                "30",
            ],
            "multiple of 8",
        ),
        (
            [
                "--pretrained_model_name_or_path",
                "m",
                "--instance_data_dir",
                "d",
                "--instance_prompt",
                "p",
                "--train_batch_size",
                "0",
            ],
            "--train_batch_size must be >= 1",
        ),
        (
            [
                "--pretrained_model_name_or_path",
                "m",
                "--instance_data_dir",
                "d",
                "--instance_prompt",
                "p",
                "--output_dir",
                "README.md",
            ],
            "--output_dir README.md is a file, not a folder",
        ),
        (
            [
                "--pretrained_model_name_or_path",
                "m",
                "--instance_data_dir",
                "d",
                "--instance_prompt",
                "p",
                "--output_dir",
                "README.md/run",
            ],
            "--output_dir README.md/run is inside README.md, which is a file",
        ),
    ],
)
def test_cli_usage_errors_exit_2(capsys, monkeypatch, argv, message):
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_class_data_dir_defaults_under_output_dir():
    args, _ = build_args(
        [
            "--pretrained_model_name_or_path",
            "m",
            "--instance_data_dir",
            "d",
            "--instance_prompt",
            "p",
            "--with_prior_preservation",
            "--class_prompt",
            "c",
            "--output_dir",
            "out",
        ]
    )
    assert args.class_data_dir.replace("\\", "/") == "out/class_images"


RECIPES = {
    "delora": (2e-2, 16, None),
    "lora": (6e-4, 16, 32),
    "dora": (6e-4, 16, 32),
    "ether": (6e-3, None, None),
    "etherplus": (6e-3, None, None),
}


def test_recipe_configs_hold_the_papers_hyperparameters():
    configs = Path(__file__).resolve().parents[1] / "configs"
    for method, (lr, rank, alpha) in RECIPES.items():
        args, filled = build_args(
            [
                "--config",
                str(configs / f"dreambooth_sd15_{method}.yaml"),
                "--instance_data_dir",
                "d",
                "--instance_prompt",
                "a photo of sks dog",
                "--class_prompt",
                "a photo of dog",
            ]
        )
        assert (args.adapter, args.learning_rate, args.max_train_steps, args.num_class_images) == (
            method,
            lr,
            1400,
            200,
        )
        assert args.pretrained_model_name_or_path == SD15 and args.with_prior_preservation
        assert rank is None or args.rank == rank
        assert args.lora_alpha == alpha
        assert (args.lambda_learning_rate == 1e-3) == (method == "delora")
        assert not any("learning_rate" in line for line in filled)  # every rate comes from the file


def test_the_deleted_sd15_hub_id_appears_nowhere():
    root = Path(__file__).resolve().parents[1]
    files = [
        root / "README.md",
        *root.glob("*.py"),
        *(root / "configs").rglob("*.yaml"),
        *(root / "delora_diffusion").rglob("*.py"),
        *(root / "bench").rglob("*.py"),
    ]
    dead = "runwayml/" + "stable-diffusion"
    assert not [str(p.relative_to(root)) for p in files if dead in p.read_text(encoding="utf-8")]


@pytest.mark.parametrize(
    "preset, expected",
    [
        ("attention", ["to_q", "to_k", "to_v", "to_out.0"]),
        ("attention+ff", ["to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2"]),
        ("all-linear", ".*"),
    ],
)
def test_target_module_presets_expand_into_the_adapter_config(preset, expected):
    from delora_diffusion.adapters import find_target_modules
    from delora_diffusion.training.args import adapter_config_from_args
    from delora_diffusion.world.denoiser import build_unet

    args, _ = build_args(
        [
            "--pretrained_model_name_or_path",
            "m",
            "--instance_data_dir",
            "d",
            "--instance_prompt",
            "a sks dog",
            "--target_modules",
            preset,
        ]
    )
    config = adapter_config_from_args(args)
    assert config.target_modules == expected
    unet = build_unet()
    linear = [n for n, m in unet.named_modules() if type(m).__name__ == "Linear"]
    chosen = find_target_modules(unet, config.target_modules)
    assert set(chosen) <= set(linear) and (preset != "all-linear" or set(chosen) == set(linear))
    assert any(".ff." in n for n in chosen) == (preset != "attention")


def _preset_sizes(unet) -> dict[str, tuple[int, float]]:
    """Per preset: (layers, millions of rank-16 LoRA parameters)."""
    from delora_diffusion.adapters import TARGET_PRESETS, find_target_modules

    modules = dict(unet.named_modules())
    sizes = {}
    for name, preset in TARGET_PRESETS.items():
        layers = find_target_modules(unet, preset if isinstance(preset, str) else list(preset))
        sizes[name] = (
            len(layers),
            round(sum(16 * (modules[n].in_features + modules[n].out_features) for n in layers) / 1e6, 2),
        )
    return sizes


def test_preset_sizes_on_sd15_and_sdxl_are_the_ones_the_readme_gives():
    from delora_diffusion.models.sd15 import sd15_unet
    from delora_diffusion.models.sdxl import sdxl_unet

    assert _preset_sizes(sd15_unet(empty=True)) == {
        "attention": (128, 3.19),
        "attention+ff": (160, 5.98),
        "all-linear": (184, 6.82),
    }
    assert _preset_sizes(sdxl_unet()) == {
        "attention": (560, 23.22),
        "attention+ff": (700, 41.86),
        "all-linear": (743, 43.3),
    }
    readme = (Path(__file__).resolve().parents[1] / "docs" / "training.md").read_text()
    assert "128, 160 and 184 layers: 3.19 M, 5.98 M and\n  6.82 M trainable" in readme
    assert "560, 700 and 743\n  layers: 23.22 M, 41.86 M and 43.30 M" in readme


def test_a_second_subject_folder_stops_instead_of_replacing_the_first(capsys):
    from delora_diffusion.training.dreambooth import build_args

    with pytest.raises(SystemExit) as stop:
        build_args(["--instance_data_dir", "a", "--instance_data_dir=b", "--instance_prompt", "a photo of sks dog"])
    assert stop.value.code == 2
    assert "--instance_data_dir given 2 times: a run trains one subject" in capsys.readouterr().err


def test_a_flag_error_is_one_line_and_a_config_true_can_be_switched_off(tmp_path, capsys):
    from delora_diffusion.training.dreambooth import build_args

    config = tmp_path / "run.yaml"
    config.write_text(
        "instance_data_dir: x\ninstance_prompt: a photo of sks dog\nzero_terminal_snr: true\n"
        "overwrite_output_dir: true\npush_to_hub: true\n"
    )
    with pytest.raises(SystemExit) as stop:
        build_args(["--config", str(config), "--rank", "0"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and len(err.strip().splitlines()) == 1 and "usage:" not in err
    assert "error: --pretrained_model_name_or_path is required" in err
    args, _ = build_args(
        [
            "--config",
            str(config),
            "--pretrained_model_name_or_path",
            "m",
            "--no_zero_terminal_snr",
            "--no_overwrite_output_dir",
            "--no_push_to_hub",
        ]
    )
    assert not (args.zero_terminal_snr or args.overwrite_output_dir or args.push_to_hub)


@pytest.mark.parametrize(
    "adapter,rate,says",
    [
        ("delora", "1e-4", "--learning_rate 0.0001 is 200× below DeLoRA's paper rate 0.02"),
        ("lora", "1e-4", None),  # diffusers' habit, within LoRA's scale
        ("lora", "2e-2", "--learning_rate 0.02 is 33× above LoRA's paper rate 0.0006"),
        ("delora", "6e-3", None),
    ],
)
def test_a_learning_rate_from_another_methods_scale_is_named(adapter, rate, says):
    from delora_diffusion.training.args import rate_scale_warning
    from delora_diffusion.training.dreambooth import build_args

    args, _ = build_args(
        [
            "--pretrained_model_name_or_path",
            "m",
            "--instance_data_dir",
            "x",
            "--instance_prompt",
            "a photo of sks dog",
            "--adapter",
            adapter,
            "--learning_rate",
            rate,
        ]
    )
    warning = rate_scale_warning(args)
    assert (warning is None) if says is None else (says in warning), warning
