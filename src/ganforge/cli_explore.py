"""The `ganforge interpolate`, `breed` and `project` subcommands: thin layers over ganforge.explore."""

from __future__ import annotations


def add_explore_commands(commands) -> None:
    p = commands.add_parser("interpolate", help="a looping animation walking between latents",
                            description="Walk GEN's latent space through the given seeds (or latent .npy files) "
                                        "and back, with spherical interpolation; writes interpolation.gif "
                                        "(and .mp4 with the video extra: pip install 'ganforge[video]').")
    _common(p, "walk")
    p.add_argument("--seeds", required=True, help="seeds, ranges or latent files, e.g. 1,7,42")
    p.add_argument("--steps", type=int, default=24, help="frames between two latents (default: %(default)s)")
    p.add_argument("--fps", type=float, default=24)
    p.add_argument("--truncation", type=float, default=1.0)
    p.set_defaults(handler=_run_interpolate)

    p = commands.add_parser("breed", help="children mixing two or more parents' latents, reproducibly",
                            description="Mix the parents' latents (seeds or child-XX.npy files from an earlier "
                                        "brood) by blending or crossover, with some mutation. Children's latents "
                                        "are saved, so they can be bred again (into another --out: a brood never "
                                        "writes over files already there unless --overwrite).")
    _common(p, "brood")
    p.add_argument("--parents", required=True, help="two or more seeds or latent files, e.g. 3,17 or brood/child-02.npy,5")
    p.add_argument("--children", type=int, default=8, help="(default: %(default)s)")
    p.add_argument("--mutation", type=float, default=0.1, help="strength of random change (default: %(default)s)")
    p.add_argument("--mode", choices=("blend", "crossover"), default="blend")
    p.add_argument("--seed", type=int, default=0, help="the same seed gives the same children")
    p.set_defaults(handler=_run_breed)

    p = commands.add_parser("project", help="find where a real image lives in the generator's latent space",
                            description="Search GEN's latent space for the image closest to IMAGE (pixel distance, "
                                        "plus Inception features with --feature-weight); saves the latent, the "
                                        "reconstruction and an animation of the search.")
    _common(p, "projection")
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("--steps", type=int, default=200, help="(default: %(default)s)")
    p.add_argument("--feature-weight", type=float, default=0.0,
                   help="weight of the Inception feature distance; 0 = pixels only (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--inception", metavar="PATH",
                   help="Inception weights for --feature-weight (default: $GANFORGE_INCEPTION, else the cache)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(handler=_run_project)


def _common(p, default_out: str) -> None:
    p.add_argument("generator", metavar="GEN")
    p.add_argument("--class", dest="label", help="class name or index, for class-conditional generators")
    p.add_argument("--out", default=default_out, help="output folder (default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace files already in the output folder (without it, they are never written over)")


def _run_interpolate(args) -> int:
    from ganforge.explore import interpolate, parse_latents
    from ganforge.generator import Generator

    gen = Generator.from_pretrained(args.generator, device=args.device)
    walk = interpolate(gen, parse_latents(args.seeds), steps=args.steps, truncation=args.truncation,
                       label=args.label, out=args.out, fps=args.fps, overwrite=args.overwrite)
    _report(walk.files, walk.skipped)
    return 0


def _run_breed(args) -> int:
    from ganforge.explore import breed, parse_latents
    from ganforge.generator import Generator

    gen = Generator.from_pretrained(args.generator, device=args.device)
    brood = breed(gen, parse_latents(args.parents), children=args.children, mutation=args.mutation, mode=args.mode,
                  seed=args.seed, label=args.label, out=args.out, overwrite=args.overwrite)
    print(f"{len(brood.images)} children of {', '.join(brood.parents)}.")
    _report(brood.files)
    return 0


def _run_project(args) -> int:
    from ganforge.explore import project
    from ganforge.generator import Generator

    gen = Generator.from_pretrained(args.generator, device=args.device)
    found = project(gen, args.image, steps=args.steps, feature_weight=args.feature_weight, label=args.label,
                    seed=args.seed, out=args.out, inception=args.inception, overwrite=args.overwrite,
                    progress=not args.quiet)
    print(f"Closest image found: pixel MSE {found.pixel_mse:.4g}"
          + (f", feature distance {found.feature_distance:.4g}" if found.feature_distance is not None else ""))
    _report(found.files)
    return 0


def _report(files, skipped: dict | None = None) -> None:
    for path in files:
        print(f"  {path}")
    for name, why in (skipped or {}).items():
        print(f"  (no {name}: {why})")
