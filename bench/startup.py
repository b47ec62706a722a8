"""Start-up time of every command: ``--help``, and a one-step training run to its end, this tree vs a baseline
revision, measured in the same run.

The baseline tree is ``git archive``d into a temporary folder and put first on ``PYTHONPATH`` (the editable
install's finder comes after it), so both trees run on the same interpreter and libraries. Each case is a
fresh process; cases alternate between the trees round by round, so drift hits both alike. The target of
issue 14: every ``--help`` answers in ≤ 2 s.

    python bench/startup.py                          # baseline 5f6def6 (before lazy imports), 5 rounds
    python bench/startup.py --baseline HEAD~1 --rounds 9
    python bench/startup.py --quick                  # 1 round, --help only
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# (label, argv after the interpreter); "{tiny}" and "{out}" are filled per run.
HELP_CASES = [
    ("train_dreambooth.py --help", ["train_dreambooth.py", "--help"]),
    ("train_semantic.py --help", ["train_semantic.py", "--help"]),
    ("generate.py --help", ["generate.py", "--help"]),
    ("generate.py semantic --help", ["generate.py", "semantic", "--help"]),
    (
        "delora-eval --help",
        ["-c", "import sys; from delora_diffusion.evaluation.cli import main; sys.exit(main())", "--help"],
    ),
    (
        "delora-export --help",
        ["-c", "import sys; from delora_diffusion.cli import export_main; sys.exit(export_main())", "--help"],
    ),
    (
        "delora-sweep --help",
        ["-c", "import sys; from delora_diffusion.studies.sweep import main; sys.exit(main())", "--help"],
    ),
    ("flag error (train_dreambooth.py --rank x)", ["train_dreambooth.py", "--rank", "x"]),
]
TRAIN_CASE = (
    "train_dreambooth.py, 1 step (tiny model)",
    [
        "train_dreambooth.py",
        "--pretrained_model_name_or_path",
        "{tiny}",
        "--instance_data_dir",
        "{data}",
        "--instance_prompt",
        "a photo of sks toy",
        "--resolution",
        "64",
        "--max_train_steps",
        "1",
        "--rank",
        "4",
        "--validation_steps",
        "0",
        "--output_dir",
        "{out}",
        "--num_threads",
        "1",
    ],
)


def _materialise(revision: str, into: Path) -> Path:
    archive = into / "baseline.tar"
    subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(archive), revision], check=True)
    tree = into / "baseline"
    with tarfile.open(archive) as tar:
        tar.extractall(tree, filter="data")
    return tree


def _time(tree: Path, argv: list[str], env: dict) -> float:
    env = {**env, "PYTHONPATH": str(tree)}
    started = time.perf_counter()
    subprocess.run([sys.executable, *argv], cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("--baseline", default="5f6def6", help="git revision to compare with (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds after one warm-up round (default 5)")
    parser.add_argument("--no_train", action="store_true", help="--help cases only")
    parser.add_argument("--quick", action="store_true", help="1 round, --help only (a smoke run)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.no_train = 1, True
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cases = list(HELP_CASES) + ([] if args.no_train else [TRAIN_CASE])
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        trees = {"this tree": ROOT, f"baseline {args.baseline}": _materialise(args.baseline, scratch)}
        if not args.no_train:
            sys.path.insert(0, str(ROOT))
            from delora_diffusion.models.tiny import ensure_tiny

            tiny = ensure_tiny("sd", scratch / "tiny").resolve()
            fill = {"tiny": str(tiny), "data": str(ROOT / "subjects" / "robot")}
        times: dict[tuple[str, str], list[float]] = {}
        for round_index in range(args.rounds + 1):  # round 0 warms the file cache
            for label, case_argv in cases:
                for tree_name, tree in trees.items() if round_index % 2 else reversed(trees.items()):
                    filled = (
                        [
                            a.format(out=scratch / f"run-{tree_name[:4]}-{round_index}", **fill) if "{" in a else a
                            for a in case_argv
                        ]
                        if not args.no_train
                        else case_argv
                    )
                    seconds = _time(tree, filled, env)
                    if round_index:
                        times.setdefault((label, tree_name), []).append(seconds)
    names = list(trees)
    print(f"\n{args.rounds} round(s), median seconds per fresh process; ratio = this tree / baseline\n")
    print(f"| command | {names[0]} | {names[1]} | ratio |\n| --- | ---: | ---: | ---: |")
    for label, _ in cases:
        mine, base = (statistics.median(times[(label, n)]) for n in names)
        print(f"| {label} | {mine:.2f} | {base:.2f} | {mine / base:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
