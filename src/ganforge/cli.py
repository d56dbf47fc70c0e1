"""The `ganforge` command: one subcommand per operation, each a thin layer over the Python API."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from ganforge import __version__
from ganforge.cli_explore import add_explore_commands
from ganforge.cli_release import add_release_commands
from ganforge.cli_studio import add_studio_command
from ganforge.cli_translate import add_translate_commands, is_translator, run_translator_eval
from ganforge.errors import GanforgeError


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # accepted anywhere on the line, not only before the command
    args, extra = parser.parse_known_args([a for a in argv if a != "--debug"])
    args.debug = debug
    # `ganforge train DATA --preset x kimg=10`: overrides may come after options too
    if extra and getattr(args, "handler", None) is _run_train and all("=" in e and not e.startswith("-") for e in extra):
        args.args += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return args.handler(args) or 0
    except KeyboardInterrupt:
        print("ganforge: interrupted.", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `ganforge ... | head`: the reader left; nothing to say to it
        sys.stderr.close()
        return 141
    except BaseException as exc:  # the one place a failure becomes a sentence and an exit status
        if args.debug or isinstance(exc, SystemExit):
            raise
        message, status = explain_failure(exc)
        print(f"ganforge: error: {message}", file=sys.stderr)
        return status


def explain_failure(exc: BaseException) -> tuple[str, int]:
    """A one-line message saying what went wrong and what to do, and the exit status for it.

    2: the user's input or settings (a `GanforgeError`); 1: the machine (disk, permissions, memory),
    or a bug in ganforge, which says to rerun with --debug for the traceback."""
    from ganforge.files import disk_full_message, is_disk_full

    if isinstance(exc, GanforgeError):
        return str(exc), 2
    if is_disk_full(exc):
        where = Path(getattr(exc, "filename", None) or ".")
        return disk_full_message(where.parent if where.suffix else where, "a file"), 1
    if isinstance(exc, PermissionError):
        return (f"permission denied: {exc.filename or exc}. Choose a folder you can write to (for example with "
                "--out), or ask its owner for access."), 1
    if isinstance(exc, FileNotFoundError):
        return f"{exc.filename or exc} does not exist. Check the path, and that nothing moved it.", 1
    if isinstance(exc, IsADirectoryError | NotADirectoryError | FileExistsError):
        return f"{exc.strerror}: {exc.filename}. Give another path.", 1
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}. Check the disk and the path, then run again.", 1
    if isinstance(exc, MemoryError):
        return ("out of memory. Use a smaller batch (batch_size= for train, --batch-size elsewhere) or fewer "
                "images at a time, and close other programs."), 1
    first = str(exc).splitlines()[0] if str(exc) else ""
    return (f"unexpected failure ({type(exc).__name__}: {first[:300]}). This is a bug in ganforge, not your "
            "mistake: run the same command with --debug to see where, and report it."), 1


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ganforge",
        description="Train, evaluate, explore and share GANs from a folder of images.",
    )
    parser.add_argument("--version", action="version", version=f"ganforge {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback when something fails")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_demo(commands)
    _add_prepare(commands)
    _add_inspect(commands)
    _add_train(commands)
    _add_export(commands)
    _add_sample(commands)
    add_explore_commands(commands)
    add_translate_commands(commands)
    add_release_commands(commands)
    add_studio_command(commands)
    _add_eval(commands)
    _add_health(commands)
    _add_audit(commands)
    _add_compare(commands)
    return parser


def _add_demo(commands) -> None:
    p = commands.add_parser("demo", help="run the main job on the built-in digits dataset (no network)",
                            description="Prepare the built-in handwritten digits, train a small GAN on them, and show the results.")
    p.add_argument("--out", default="ganforge-demo", help="folder for everything the demo writes (default: %(default)s)")
    p.add_argument("--resolution", type=int, default=32, help="image size in pixels (default: %(default)s)")
    p.add_argument("--minutes", type=float, default=3.0, help="training time (default: %(default)s)")
    p.add_argument("--kimg", type=float, default=0.0, help="train on this many thousand images instead of minutes")
    p.set_defaults(handler=_run_demo)


def _run_demo(args) -> int:
    from ganforge.demo import run_demo

    run_demo(args.out, resolution=args.resolution, minutes=args.minutes, kimg=args.kimg)
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
    p.add_argument("--attributes", metavar="FILE",
                   help="a CSV (header: file, then one column per attribute) or JSON ({file: {attribute: value}}) "
                        "of attributes per image, numbers or categories, for attribute-conditional training and "
                        "`ganforge edit --attribute`; a file is named by its path relative to SRC or by its base "
                        "name when that is unique (for a dataset name: its six-digit index, 000000). Name a column "
                        "hair:categorical to read numbers as categories")
    pairs = p.add_argument_group("image-to-image (a second side B; at most one of these)")
    pairs.add_argument("--pair-with", metavar="B_SOURCE",
                       help="paired: B from another folder or archive, each file matched to the file of SRC with "
                            "the same path less its extension (a/cat.jpg with a/cat.png); unmatched files are skipped")
    pairs.add_argument("--pairs", choices=["side-by-side"],
                       help="paired: each image of SRC holds A on the left and B on the right (pix2pix's AB images)")
    pairs.add_argument("--derive", metavar="MODE",
                       help="paired: A made from each image of SRC (a folder, an archive, a dataset name or a "
                            "prepared dataset): gray (colourisation), edges (Canny), sketch (XDoG pencil "
                            "drawing), downscale:F (A F times smaller, bicubic: super-resolution), labels:K "
                            "(each pixel's colour cluster of K, fitted on the dataset)")
    pairs.add_argument("--unpaired", metavar="B_SOURCE",
                       help="unpaired: B an independent set from another folder or archive (CycleGAN)")
    p.add_argument("--count", type=int, default=100_000, help="point sets: how many points (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="point sets: sampling seed (default: %(default)s)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(handler=_run_prepare)


def _run_prepare(args) -> int:
    from ganforge.data.prepare import prepare_dataset

    options = dict(resolution=args.resolution, crop=args.crop, labels=args.labels, channels=args.channels,
                   background=args.background, min_size=args.min_size, workers=args.workers,
                   overwrite=args.overwrite, mirror=args.mirror, count=args.count, seed=args.seed,
                   attributes=args.attributes, pair_with=args.pair_with, pairs=args.pairs, derive=args.derive,
                   unpaired=args.unpaired)
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


def _add_train(commands) -> None:
    p = commands.add_parser(
        "train",
        help="train a GAN on a prepared dataset (or resume a run)",
        description=(
            "Train on DATASET (a folder made by `ganforge prepare`). Settings come from a preset "
            "(dcgan for images, points for point sets) and key=value overrides, e.g. `loss=hinge kimg=200 "
            "model.g_width=32`; unknown keys are an error. Each run gets a numbered folder under runs/ "
            "with its config, log, sample grids and checkpoints. Ctrl-C saves and stops (exit status 130; "
            "SIGTERM: 143); `ganforge train --resume RUN` continues with all state restored, bit for bit "
            "with deterministic=true."
        ),
    )
    p.add_argument("args", nargs="*", metavar="DATASET | key=value",
                   help="the prepared dataset, then any key=value overrides")
    p.add_argument("--preset", help="a preset name or a .yaml file (see --list-presets)")
    p.add_argument("--resume", metavar="RUN", help="continue this run folder from its latest checkpoint")
    p.add_argument("--dry-run", action="store_true", help="print the resolved configuration and stop")
    p.add_argument("--list-presets", action="store_true", help="list the built-in presets and stop")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(handler=_run_train)


def _run_train(args) -> int:
    from ganforge.train.config import ConfigError, dump_yaml, parse_overrides, preset_names
    from ganforge.api import train_gan

    if args.list_presets:
        print("\n".join(preset_names()))
        return 0
    positional = [a for a in args.args if "=" not in a]
    overrides = parse_overrides([a for a in args.args if "=" in a])
    if len(positional) > 1 or (positional and args.resume):
        raise ConfigError(f"Give one dataset, or --resume RUN without a dataset (got {positional}).")
    result = train_gan(positional[0] if positional else None, preset=args.preset, overrides=overrides,
                       resume=args.resume, dry_run=args.dry_run, progress=not args.quiet)
    if result.stopped_by == "dry-run":
        print(dump_yaml(result.config), end="")
        return 0
    run = result.run_dir
    print(f"\nStopped by {result.stopped_by} at {result.images_seen / 1000:.1f} kimg. Everything is in {run}:")
    for name in ("progress.gif", "losses.png", "reals.png"):
        if (run / name).exists():
            print(f"  {run / name}")
    print(f"  {run / 'grids'}/  {run / 'checkpoints'}/  {run / 'log.jsonl'}")
    if result.stopped_by in ("SIGINT", "SIGTERM"):
        # unfinished: a non-zero status, so `ganforge train ... && ganforge export ...` stops here too
        print(f"Continue with: ganforge train --resume {shlex.quote(str(run))}")
        return 130 if result.stopped_by == "SIGINT" else 143
    print(f"Export the generator with: ganforge export {shlex.quote(str(run))}")
    return 0


def _add_export(commands) -> None:
    p = commands.add_parser("export", help="write a run's generator as config.json + model.safetensors",
                            description="Export RUN's EMA generator (its best checkpoint, else its latest) with a "
                                        "README.md model card.")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--out", help="target folder (default: RUN/generator)")
    p.add_argument("--which", choices=("best", "last"), default="best",
                   help="the best checkpoint by KID when training measured one, or the last (default: %(default)s)")
    p.add_argument("--no-mark", action="store_true",
                   help="its images carry no provenance mark (for a private model only: a public release marks)")
    p.set_defaults(handler=_run_export)


def _run_export(args) -> int:
    from ganforge.export import export_generator

    print(f"Exported the generator to {export_generator(args.run, args.out, args.which, mark=not args.no_mark)}")
    return 0


def _add_sample(commands) -> None:
    p = commands.add_parser("sample", help="new images from an exported generator, by seed",
                            description="Generate images from GEN (an exported generator folder, or a run that has "
                                        "been exported). Each image's seed is in its file name and PNG metadata; the "
                                        "same seed gives the same image again on the same device. Images are made "
                                        "and written a batch at a time, so any count fits in memory.")
    p.add_argument("generator", metavar="GEN")
    p.add_argument("--seeds", help="seeds and ranges, e.g. 1,7,42 or 0-99 (default: 0 to count-1)")
    p.add_argument("--count", type=int, help="images when no --seeds (default: 16)")
    p.add_argument("--truncation", type=float, default=1.0, help="below 1: more typical, less varied (default: %(default)s)")
    p.add_argument("--truncation-cutoff", type=int, metavar="N",
                   help="StyleGAN2: truncate only the first N style layers (the coarse ones: pose, shape)")
    p.add_argument("--class", dest="label", help="class name or index, for class-conditional generators")
    p.add_argument("--out", default="samples", help="folder for the images (default: %(default)s)")
    p.add_argument("--grid", action="store_true", help="also write grid.png with the first 256 of them")
    p.add_argument("--grid-only", action="store_true", help="write only grid.png (of the first 256)")
    p.add_argument("--batch-size", type=int, default=64, help="images made at once (default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.add_argument("--overwrite", action="store_true",
                   help="replace files already in --out (without it, sample never writes over a file)")
    p.add_argument("--no-mark", action="store_true",
                   help="no provenance mark in the images (a private model's owner only; a public release refuses)")
    p.set_defaults(handler=_run_sample)


def _run_sample(args) -> int:
    from ganforge.generator import Generator, GeneratorError, first_seeds, parse_seeds, stale_export, write_samples

    if args.seeds is not None and args.count is not None:
        raise GeneratorError("Give --seeds or --count, not both (--count N means seeds 0 to N-1).")
    seeds = parse_seeds(args.seeds) if args.seeds is not None else first_seeds(16 if args.count is None else args.count)
    gen = Generator.from_pretrained(args.generator, device=args.device, mark=False if args.no_mark else None)
    if (stale := stale_export(args.generator)) is not None:
        print(stale, file=sys.stderr)
    written = write_samples(gen, seeds, args.out, truncation=args.truncation, label=args.label, cutoff=args.truncation_cutoff,
                            files=not args.grid_only, with_grid=args.grid or args.grid_only,
                            batch_size=args.batch_size, progress=not args.quiet, overwrite=args.overwrite)
    print(written.summary())
    return 0


def _add_eval(commands) -> None:
    p = commands.add_parser(
        "eval", help="FID, KID, precision/recall, density/coverage (and IS) of a generator, run or folder",
        description=(
            "Compare INPUT (an exported generator, a run folder, a prepared dataset or a folder of images) "
            "with reference images (--data; by default the dataset a generator or run was trained on). "
            "Features come from the standard FID Inception-v3; images are resized to 299x299 bilinearly "
            "(protocol inception-2015-12-05/bilinear299). Results of a run are appended to RUN/metrics.jsonl."))
    p.add_argument("input", metavar="INPUT")
    p.add_argument("--data", metavar="REFERENCE", help="reference images: a prepared dataset or an image folder")
    p.add_argument("--metrics", default="fid,kid", help="any of fid,kid,pr,dc,is (default: %(default)s)")
    p.add_argument("--count", type=int, default=10_000, help="generated images (default: %(default)s)")
    p.add_argument("--reference-count", type=int, default=None,
                   help="real images for FID's statistics, at most all of them (default: 50000; as many as "
                        "--count when the reference is a generator or run)")
    p.add_argument("--which", choices=("best", "last"), default="best", help="a run's checkpoint (default: %(default)s)")
    p.add_argument("--inception", metavar="PATH", help="the Inception weights file (default: GANFORGE_INCEPTION, the cache, or a download)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--runtime", choices=("auto", "torch", "onnxruntime"), default=None,
                   help="what runs the Inception network: auto (default, or GANFORGE_RUNTIME) uses ONNX Runtime "
                        "on CPU when installed (pip install \"ganforge[fast]\"), about 1.4x faster; same features")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-cache", action="store_true", help="recompute the reference statistics")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--judge", metavar="DATASET",
                   help="image-to-image models: a dataset of the target domain with classes (e.g. MNIST); a small "
                        "classifier trained on it reports how many outputs keep their input's class (DTN)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(handler=_run_eval)


def _run_eval(args) -> int:
    import json

    from ganforge.metrics.evaluate import METRICS, MetricsError, calculate_metrics

    chosen = {m.strip() for m in args.metrics.split(",") if m.strip()}
    if not chosen or chosen - set(METRICS):
        raise MetricsError(f"--metrics {args.metrics!r}: choose from {','.join(METRICS)}.")
    if is_translator(args.input):  # PSNR, SSIM, L1, FID/KID against held-out pairs, beside a trivial baseline
        return run_translator_eval(args)
    if args.judge:
        raise MetricsError("--judge is for image-to-image models (class preservation of a translator); "
                           f"{args.input} is not one.")
    from ganforge.metrics.inception_onnx import INSTALL_HINT, installed, requested_runtime

    if not args.quiet and not installed() and requested_runtime(args.runtime) == "auto":
        print(f"Tip: on a CPU, {INSTALL_HINT} computes the Inception features about 1.4x faster.", file=sys.stderr)
    results = calculate_metrics(
        args.input, args.data, fid="fid" in chosen, kid="kid" in chosen, pr="pr" in chosen, dc="dc" in chosen,
        isc="is" in chosen, count=args.count, reference_count=args.reference_count, which=args.which,
        device=args.device, inception=args.inception, batch_size=args.batch_size, seed=args.seed,
        cache=not args.no_cache, progress=not args.quiet, runtime=args.runtime)
    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    for name, value in results.items():
        shown = f"{value:.6g}" if isinstance(value, float) else value
        print(f"{name:>22}  {shown}")
    return 0


def _add_health(commands) -> None:
    p = commands.add_parser("health", help="is a run still improving, collapsing, overpowered? stop, continue or change",
                            description="Read RUN's logs and write health.md and health.png with a verdict in plain words.")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--out", help="folder for the report (default: RUN)")
    p.set_defaults(handler=_run_health)


def _run_health(args) -> int:
    from ganforge.metrics.health import write_health_report

    diagnosis, report = write_health_report(args.run, args.out)
    print(diagnosis.summary())
    for finding in diagnosis.findings:
        print(f"- {finding.title}: {finding.detail}")
    print(f"Report: {report} (with {report.with_name('health.png')})")
    return 0


def _add_audit(commands) -> None:
    p = commands.add_parser(
        "audit", help="is the generator copying its training images? (nearest neighbours + Meehan et al.'s test)",
        description=("Compare generated images' nearest training images with those of real images the generator "
                     "never saw, run the data-copying test of Meehan et al. (2020), and write audit.md, "
                     "audit.json, closest-pairs.png and distances.png. Exit status 1 when the verdict is copying."))
    p.add_argument("generated", metavar="RUN_OR_GENERATOR")
    p.add_argument("--data", metavar="DATASET", help="the training images (default: the dataset the run recorded)")
    p.add_argument("--heldout", metavar="DATASET", help="real images it never saw, e.g. a test split "
                   "(default: a part of --data held out from the reference)")
    p.add_argument("--count", type=int, default=1000, help="generated images (default: %(default)s)")
    p.add_argument("--reference-count", type=int, default=10_000, help="training images compared with (default: %(default)s)")
    p.add_argument("--out", help="report folder (default: RUN/audit, or ./audit)")
    p.add_argument("--which", choices=("best", "last"), default="best", help="a run's checkpoint (default: %(default)s)")
    p.add_argument("--inception", metavar="PATH", help="the Inception weights file")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(handler=_run_audit)


def _run_audit(args) -> int:
    from pathlib import Path

    from ganforge.metrics.audit import audit_generator

    out = args.out or (Path(args.generated) / "audit" if (Path(args.generated) / "checkpoints").is_dir() else "audit")
    result = audit_generator(args.generated, args.data, heldout=args.heldout, count=args.count,
                             reference_count=args.reference_count, out=out, which=args.which, device=args.device,
                             inception=args.inception, seed=args.seed, progress=not args.quiet)
    print(result.summary())
    print(f"Report: {Path(out) / 'audit.md'}")
    return 1 if result.verdict == "copying" else 0


def _add_compare(commands) -> None:
    p = commands.add_parser("compare", help="a table and plots of runs' metrics against images seen and time",
                            description="Compare the metrics logged by several runs (RUN/metrics.jsonl).")
    p.add_argument("runs", nargs="+", metavar="RUN")
    p.add_argument("--out", default="compare.png", help="the picture to write (default: %(default)s)")
    p.set_defaults(handler=_run_compare)


def _run_compare(args) -> int:
    from ganforge.metrics.compare import compare_runs

    table, picture = compare_runs(args.runs, args.out)
    print(table)
    print(f"\nPlots: {picture}")
    return 0
