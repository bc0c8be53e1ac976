"""The ``biomd`` command line.

Each subcommand is a small function registered in :data:`COMMANDS`; heavy
imports happen inside the handlers so ``biomd --help`` is instant.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable


def cmd_presets(args: argparse.Namespace) -> int:
    """List model presets and their parameter counts (built on the meta device: no memory)."""
    from biomd_core.model.presets import PRESETS, preset_parameter_count

    rows = [{"name": name, "parameters": preset_parameter_count(name), **vars(cfg)} for name, cfg in PRESETS.items()]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{'preset':<8} {'parameters':>14} {'c_single':>9} {'trunk':>6} {'encoder':>8} {'heads':>6}")
        for r in rows:
            print(
                f"{r['name']:<8} {r['parameters']:>14,} {r['c_single']:>9} {r['n_trunk_layers']:>6}"
                f" {r['n_encoder_layers']:>8} {r['n_heads']:>6}"
            )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Export a model's velocity network and one sampler step to TorchScript."""
    from biomd_core.export import export_torchscript
    from biomd_core.io import load_model

    paths = export_torchscript(load_model(args.model), args.out)
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Train a tiny model on a process with a known answer, sample from it, report."""
    from biomd_core.demo import run_engine_demo

    summary = run_engine_demo(Path(args.out), steps=args.steps, seed=args.seed, progress=not args.quiet)
    print(json.dumps(summary, indent=2))
    return 0


COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], str]] = {
    "presets": (cmd_presets, "list model presets with parameter counts"),
    "export": (cmd_export, "export a model to TorchScript (network + sampler step)"),
    "demo": (cmd_demo, "train a tiny model on the fly and sample from it (engine demo)"),
}


def build_parser() -> argparse.ArgumentParser:
    from biomd_core.version import __version__

    parser = argparse.ArgumentParser(prog="biomd", description="BioMD generative molecular dynamics for OpenMM")
    parser.add_argument("--version", action="version", version=f"biomd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == "presets":
            p.add_argument("--json", action="store_true", help="machine-readable output")
        elif name == "export":
            p.add_argument("--model", required=True, help="checkpoint path or shipped model name")
            p.add_argument("--out", required=True, help="output directory for the .pt archives")
        elif name == "demo":
            p.add_argument("--out", default="runs/demo", help="output directory")
            p.add_argument("--steps", type=int, default=1000, help="training steps")
            p.add_argument("--seed", type=int, default=0)
            p.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = COMMANDS[args.command][0]
    try:
        return handler(args)
    except (ValueError, RuntimeError, KeyError, FileNotFoundError) as exc:
        # User-facing errors: one clear line, no traceback.
        print(f"biomd {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
