"""The `ganforge` command: one subcommand per operation, each a thin layer over the Python API."""

from __future__ import annotations

import argparse
import sys

from ganforge import __version__
from ganforge.errors import GanforgeError


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return args.handler(args) or 0
    except GanforgeError as exc:
        print(f"ganforge: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ganforge: interrupted.", file=sys.stderr)
        return 130


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ganforge",
        description="Train, evaluate, explore and share GANs from a folder of images.",
    )
    parser.add_argument("--version", action="version", version=f"ganforge {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_demo(commands)
    _add_prepare(commands)
    _add_inspect(commands)
    return parser


def _add_demo(commands) -> None:
    p = commands.add_parser("demo", help="run the main job on the built-in digits dataset (no network)",
                            description="Prepare the built-in handwritten digits and show them.")
    p.add_argument("--out", default="ganforge-demo", help="folder for everything the demo writes (default: %(default)s)")
    p.add_argument("--resolution", type=int, default=32, help="image size in pixels (default: %(default)s)")
    p.set_defaults(handler=_run_demo)


def _run_demo(args) -> int:
    from ganforge.demo import run_demo

    run_demo(args.out, resolution=args.resolution)
    return 0


def _add_prepare(commands) -> None:
    p = commands.add_parser(
        "prepare",
        help="turn a folder, an archive or a dataset name into a prepared dataset",
        description=(
            "Prepare SRC into OUT once, so training reads it fast. SRC is a folder (searched recursively), "
            "a .zip or .tar(.gz) archive, a dataset name (digits, mnist, fashion-mnist, cifar10, cifar10-jpeg; "
            "add :test for the test split), or a 2-D point set (ring8, grid25). Files that cannot be used are "
            "skipped with a reason, listed in OUT/prepare-report.json. SRC is never modified. An interrupted "
            "run finishes where it stopped when run again."
        ),
    )
    p.add_argument("src", metavar="SRC")
    p.add_argument("out", metavar="OUT")
    p.add_argument("--resolution", "-r", type=int, help="output size in pixels, e.g. 64 (required for images)")
    p.add_argument("--crop", choices=["center", "pad", "stretch"], default="center",
                   help="center: crop the central square; pad: fit the whole image on the background; "
                        "stretch: ignore the aspect ratio (default: %(default)s)")
    p.add_argument("--labels", choices=["auto", "none", "folders"], default="auto",
                   help="folders: one class per top-level subfolder; auto: a named dataset's classes, "
                        "otherwise none (default: %(default)s)")
    p.add_argument("--channels", choices=["auto", "1", "3", "4"], default="auto",
                   help="auto: 1 if every image is grey, else 3; 4 keeps transparency (default: %(default)s)")
    p.add_argument("--background", default="white",
                   help="colour that transparency is composited onto: a name or #rrggbb (default: %(default)s)")
    p.add_argument("--min-size", type=int, default=0, help="skip images whose shorter side is smaller (pixels)")
    p.add_argument("--max-pixels", type=int, default=None,
                   help="skip images with more pixels than this (decompression bombs; default: 178,956,970)")
    p.add_argument("--workers", type=int, default=0, help="processes to use (default: every core)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier preparation made with other settings")
    p.add_argument("--mirror", help="folder holding local copies of dataset files (default: $GANFORGE_MIRROR)")
    p.add_argument("--count", type=int, default=100_000, help="point sets: how many points (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="point sets: sampling seed (default: %(default)s)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(handler=_run_prepare)


def _run_prepare(args) -> int:
    from ganforge.data.prepare import prepare_dataset

    options = dict(resolution=args.resolution, crop=args.crop, labels=args.labels, channels=args.channels,
                   background=args.background, min_size=args.min_size, workers=args.workers,
                   overwrite=args.overwrite, mirror=args.mirror, count=args.count, seed=args.seed)
    if args.max_pixels is not None:
        options["max_pixels"] = args.max_pixels
    result = prepare_dataset(args.src, args.out, progress=not args.quiet, **options)
    print(result.summary())
    print(f"Next: ganforge inspect {result.path}")
    return 0


def _add_inspect(commands) -> None:
    p = commands.add_parser("inspect", help="counts, classes and a contact sheet of a prepared dataset",
                            description="Show what a prepared dataset holds and draw random items into a PNG.")
    p.add_argument("dataset", metavar="DATASET")
    p.add_argument("--out", help="where to write the contact sheet (default: DATASET/contact-sheet.png)")
    p.add_argument("--count", type=int, default=64, help="how many images to draw (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="which random images (default: %(default)s)")
    p.set_defaults(handler=_run_inspect)


def _run_inspect(args) -> int:
    from ganforge.data.inspect import inspect_dataset

    print(inspect_dataset(args.dataset, out=args.out, count=args.count, seed=args.seed).summary())
    return 0
