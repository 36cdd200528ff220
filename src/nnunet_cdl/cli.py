"""`nnunet-cdl` command line: one subcommand per tool, each implemented in its concept's `cli` module.

Subcommand modules are imported only when called, so `nnunet-cdl synth` does not pay for torch or nnU-Net.
Each module exposes `main(argv: list[str], prog: str) -> int`.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence

from nnunet_cdl import __version__
from nnunet_cdl.errors import CdlError

COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("nnunet_cdl.synth.cli", "generate a synthetic abdominal CT dataset with noisy pseudo-labels"),
    "clean-labels": ("nnunet_cdl.consensus.clean_cli", "map label values outside the dataset's labels to 0"),
    "consensus": ("nnunet_cdl.consensus.cli", "refine several pseudo-label sets into one dataset with difficulty tiers"),
    "consensus-merge": ("nnunet_cdl.consensus.merge_cli", "merge the parts of a `consensus --num-parts N` run"),
    "merge-partial": ("nnunet_cdl.consensus.partial_cli", "fill the organs a partial label lacks from a teacher"),
    "evaluate": ("nnunet_cdl.evaluation.cli", "FLARE 2024 DSC and NSD per case and organ, with a report"),
    "bench": ("nnunet_cdl.evaluation.bench_cli", "wall time and peak memory of a prediction command, case by case"),
    "plan": ("nnunet_cdl.planning.cli", "nnUNetv2_plan_and_preprocess with nnunet-cdl's planners (LightUNetPlanner)"),
    "env": ("nnunet_cdl.nnunet_env", 'print the exports stock nnU-Net commands need: eval "$(nnunet-cdl env)"'),
    "predict": ("nnunet_cdl.inference.cli", "nnUNetv2_predict's flags with the fast center-first CPU predictor"),
    "swinxseg-pretrain": ("nnunet_cdl.training.swinxseg_pretrain", "SMIT self-supervised pretraining of Swin-X Seg for -pretrained_weights"),
}
"""Subcommand -> (module, one-line help)."""


def usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [f"usage: nnunet-cdl <command> [options]   (nnunet-cdl {__version__})", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_text}" for name, (_, help_text) in COMMANDS.items()]
    lines += ["", "Run `nnunet-cdl <command> -h` for a command's options."]
    return "\n".join(lines)


def run_guarded(prog: str, body: Callable[[], int | None]) -> int:
    """Run a command body; a `CdlError`, or an operating-system error about a file (no permission, disk full),
    becomes one line on stderr naming it, and exit code 2."""
    try:
        return int(body() or 0)
    except CdlError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.filename is None:
            raise
        print(f"{prog}: error: {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] == "--version":
        print(__version__)
        return 0
    name = argv[0]
    if name not in COMMANDS:
        print(f"nnunet-cdl: error: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    prog = f"nnunet-cdl {name}"
    return run_guarded(prog, lambda: module.main(argv[1:], prog))


if __name__ == "__main__":
    sys.exit(main())
