"""The `ganforge translate` subcommand, and `ganforge eval` for image-to-image models: thin layers over
ganforge.translator and ganforge.metrics.translation."""

from __future__ import annotations

import json
from pathlib import Path


def add_translate_commands(commands) -> None:
    p = commands.add_parser(
        "translate", help="turn images into images with an exported image-to-image model (colourise, upscale, ...)",
        description="Translate INPUT (image files, folders of images, or one prepared dataset) with MODEL, an exported "
                    "image-to-image model (pix2pix, CycleGAN, super-resolution, SPADE, DTN), into PNG files in --out. "
                    "Images of any size: large ones are cut into overlapping tiles, so memory stays bounded. The "
                    "output is deterministic. Every input is checked before anything is written.")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("inputs", nargs="+", metavar="INPUT")
    p.add_argument("--out", required=True, help="folder for the translated images (made when missing)")
    p.add_argument("--direction", help="a_to_b (default) or, for a two-way model (CycleGAN), b_to_a")
    p.add_argument("--derive", action="store_true",
                   help="first turn each input into what the model learned from (e.g. a photo into its sketch or grey "
                        "image), as prepare --derive did for the training pairs")
    p.add_argument("--tile", type=int, default=512, help="tile side in output pixels for large images (default: %(default)s)")
    p.add_argument("--no-tiles", action="store_true", help="translate each image whole, however big")
    p.add_argument("--overlap", type=int, default=32, help="pixels each tile overlaps its neighbours (default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace files already in --out")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(handler=_run_translate)


def _run_translate(args) -> int:
    from ganforge.translator import Translator, write_translations

    translator = Translator.from_pretrained(args.model, device=args.device, direction=args.direction)
    written = write_translations(translator, args.inputs, args.out, derive=args.derive,
                                 tile=None if args.no_tiles else args.tile, overlap=args.overlap,
                                 overwrite=args.overwrite, progress=not args.quiet)
    print(written.summary())
    return 0


def is_translator(path: str) -> bool:
    """Whether `path` names an exported image-to-image model (or a run whose export is one)."""
    for folder in (Path(path), Path(path) / "generator"):
        try:
            return json.loads((folder / "config.json").read_text(encoding="utf-8")).get("task") == "image-to-image"
        except (OSError, ValueError, AttributeError):
            continue
    return False


def run_translator_eval(args) -> int:
    """`ganforge eval MODEL --data PAIRS` for an image-to-image model: the figures beside the baseline's."""
    from ganforge.metrics.translation import TranslationMetricsError, evaluate_translator

    if not args.data:
        raise TranslationMetricsError("Give held-out pairs to compare with: ganforge eval MODEL --data PAIRS (a "
                                      "dataset prepared like the training one, from images the model never saw).")
    chosen = {m.strip() for m in args.metrics.split(",") if m.strip()}
    results = evaluate_translator(args.input, args.data, count=min(args.count, 10_000), fid="fid" in chosen,
                                  kid="kid" in chosen, device=args.device, inception=args.inception,
                                  progress=not args.quiet, seed=args.seed, judge_data=args.judge)
    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    print(f"{results['images']:,} images; baseline: {results['baseline']}")
    print(f"{'':>10}  {'model':>10}  {'baseline':>10}")
    for key in ("psnr", "ssim", "l1", "fid", "kid", "cycle_l1", "class_preserved"):
        if key in results and results[key] is not None:
            base = results.get(f"{key}_baseline")
            print(f"{key:>10}  {results[key]:>10.4g}  {'' if base is None else format(base, '>10.4g')}")
    if "judge_accuracy" in results:
        print(f"the judge reads {results['judge_accuracy']:.1%} of held-out target images right")
    print(f"protocol: {results['protocol']}")
    return 0
