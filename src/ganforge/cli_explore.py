"""The `ganforge interpolate`, `breed`, `project`, `style-mix`, `directions` and `edit` subcommands: thin layers
over ganforge.explore and ganforge.steer."""

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
    p.add_argument("--mode", choices=("blend", "crossover", "genes"), default="blend",
                   help="blend or crossover the latents; genes (StyleGAN2): each layer group (coarse, middle, fine) "
                        "from one parent, as Artbreeder does (default: %(default)s)")
    p.add_argument("--genes", help="with --mode genes, fix where groups come from: coarse=0,middle=blend,fine=1 "
                                   "(parents by place; default: drawn per child)")
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
    p.add_argument("--space", choices=("z", "w", "w+"),
                   help="where to search: z (any generator), w or w+ (StyleGAN2: one style for all layers, or one "
                        "per layer, with the StyleGAN2 projector's noise maps; editable with edit and breed --mode "
                        "genes). Default: w for StyleGAN2, else z")
    p.add_argument("--inception", metavar="PATH",
                   help="Inception weights for --feature-weight (default: $GANFORGE_INCEPTION, else the cache)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(handler=_run_project)

    p = commands.add_parser("style-mix", help="the style-mixing grid: rows' coarse styles on columns' fine ones",
                            description="Draw StyleGAN's style-mixing grid: each cell takes its row latent's styles on "
                                        "--layers and its column latent's on the others; the columns' own images "
                                        "run along the top, the rows' down the left. Writes style-mix.png.")
    _common(p, "style-mix")
    p.add_argument("--rows", required=True, help="seeds or style files, e.g. 1,2,3")
    p.add_argument("--cols", required=True, help="seeds or style files, e.g. 10,11,12")
    p.add_argument("--layers", default="coarse",
                   help="the rows' layers: coarse (4-8 px: pose, shape), middle (16-32 px), fine (64 px and up: "
                        "colour, texture), all, or numbers such as 0-3 (default: %(default)s)")
    p.add_argument("--truncation", type=float, default=1.0)
    p.set_defaults(handler=_run_style_mix)

    p = commands.add_parser("directions", help="find semantic directions (PCA, GANSpace) and save them with GEN",
                            description="Find unsupervised directions in GEN's latent space by principal components "
                                        "(Härkönen et al. 2020): in w for StyleGAN2, through an early feature map "
                                        "for DCGAN-family generators. Saves directions.json, directions.safetensors, "
                                        "directions.png and a strip per direction (-3 to +3 standard deviations) in "
                                        "GEN's folder; use them with edit.")
    p.add_argument("generator", metavar="GEN")
    p.add_argument("--count", type=int, default=10, help="directions to keep (default: %(default)s)")
    p.add_argument("--samples", type=int, help="latents sampled for the PCA (default: 20,000 in w, 3,000 in z)")
    p.add_argument("--layers", help="StyleGAN2: the layers the directions move (coarse, middle, fine, 0-3...; "
                                    "default all)")
    p.add_argument("--seeds", default="0,1,2", help="seeds drawn on the strips (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the PCA sample (default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace directions found before")
    p.set_defaults(handler=_run_directions)

    p = commands.add_parser("edit", help="slide one image along a direction (or an attribute): a strip and animation",
                            description="Move one image (a seed or a latent/style file) along a direction found by "
                                        "`ganforge directions`, or change one attribute of an attribute-conditioned "
                                        "generator keeping its latent. A range (-2..2) writes strip.png and edit.gif; "
                                        "one value writes edited.png with its code and recipe (edited.npy, .json).")
    _common(p, "edit")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--seed", type=int, help="the image to edit, by seed")
    which.add_argument("--latent", help="the image to edit, by latent or style file (a projection, a child)")
    p.add_argument("--direction", type=int, help="the direction's number (see directions.png in GEN)")
    p.add_argument("--strength", default="-2..2",
                   help="standard deviations along the direction: a range -2..2 or one value (default: %(default)s)")
    p.add_argument("--attribute", help="instead of a direction: NAME=FROM..TO, e.g. thickness=1..4")
    p.add_argument("--steps", type=int, default=9, help="images in a range (default: %(default)s)")
    p.add_argument("--layers", help="StyleGAN2: the layers to move (default: the direction's own, see directions.json)")
    p.add_argument("--truncation", type=float, default=1.0)
    p.add_argument("--fps", type=float, default=8)
    p.set_defaults(handler=_run_edit)


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
    from ganforge.generator import Generator, GeneratorError

    gen = Generator.from_pretrained(args.generator, device=args.device)
    if args.mode == "genes":
        from ganforge.steer import breed_genes

        brood = breed_genes(gen, parse_latents(args.parents), children=args.children, mutation=args.mutation,
                            genes=args.genes, seed=args.seed, label=args.label, out=args.out, overwrite=args.overwrite)
        print(f"{len(brood.images)} children of {', '.join(brood.parents)} (genes by layer group).")
        _report(brood.files)
        return 0
    if args.genes:
        raise GeneratorError("--genes goes with --mode genes.")
    brood = breed(gen, parse_latents(args.parents), children=args.children, mutation=args.mutation, mode=args.mode,
                  seed=args.seed, label=args.label, out=args.out, overwrite=args.overwrite)
    print(f"{len(brood.images)} children of {', '.join(brood.parents)}.")
    _report(brood.files)
    return 0


def _run_project(args) -> int:
    from ganforge.explore import project
    from ganforge.generator import Generator

    gen = Generator.from_pretrained(args.generator, device=args.device)
    from ganforge.steer import project_styles, style_based

    space = args.space or ("w" if style_based(gen) else "z")
    if space != "z":
        if args.feature_weight:
            from ganforge.generator import GeneratorError

            raise GeneratorError("--feature-weight works with --space z; in w and w+ the distance is pixels only.")
        styles = project_styles(gen, args.image, space=space, steps=args.steps, label=args.label, seed=args.seed,
                                out=args.out, overwrite=args.overwrite, progress=not args.quiet)
        print(f"Closest image found in {space}: pixel MSE {styles.pixel_mse:.4g}")
        _report(styles.files)
        return 0
    found = project(gen, args.image, steps=args.steps, feature_weight=args.feature_weight, label=args.label,
                    seed=args.seed, out=args.out, inception=args.inception, overwrite=args.overwrite,
                    progress=not args.quiet)
    print(f"Closest image found: pixel MSE {found.pixel_mse:.4g}"
          + (f", feature distance {found.feature_distance:.4g}" if found.feature_distance is not None else ""))
    _report(found.files)
    return 0


def _run_style_mix(args) -> int:
    from ganforge.explore import parse_latents
    from ganforge.generator import Generator
    from ganforge.steer import style_mix

    gen = Generator.from_pretrained(args.generator, device=args.device)
    made = style_mix(gen, parse_latents(args.rows), parse_latents(args.cols), layers=args.layers,
                     truncation=args.truncation, label=args.label, out=args.out, overwrite=args.overwrite)
    print(f"{len(made.rows)} x {len(made.cols)} mixes, rows' styles on layers {made.layers[0]}-{made.layers[-1]}.")
    _report(made.files)
    return 0


def _run_directions(args) -> int:
    from ganforge.generator import Generator, parse_seeds
    from ganforge.directions import find_directions

    gen = Generator.from_pretrained(args.generator, device=args.device)
    found = find_directions(gen, count=args.count, samples=args.samples, seed=args.seed, layers=args.layers,
                            strip_seeds=list(parse_seeds(args.seeds)), overwrite=args.overwrite)
    shares = ", ".join(f"{100 * float(v):.1f}%" for v in found.variance[:5])
    print(f"{len(found)} directions in {found.space} (variance explained by the first: {shares}).")
    _report(found.files[:3] + ([found.files[3].parent] if len(found.files) > 3 else []))
    return 0


def _run_edit(args) -> int:
    from ganforge.generator import Generator, GeneratorError
    from ganforge.directions import edit, parse_strengths

    gen = Generator.from_pretrained(args.generator, device=args.device)
    ref = args.seed if args.seed is not None else args.latent
    if args.attribute:
        if args.direction is not None:
            raise GeneratorError("Give --direction or --attribute, not both.")
        return _run_attribute_edit(gen, ref, args)
    if args.direction is None:
        raise GeneratorError("Say what to change: --direction K (see directions.png in the generator's folder) or "
                             "--attribute NAME=FROM..TO.")
    made = edit(gen, ref, direction=args.direction, strengths=parse_strengths(args.strength, args.steps),
                layers=args.layers, truncation=args.truncation, label=args.label, out=args.out, fps=args.fps,
                overwrite=args.overwrite)
    print(f"{len(made.images)} image(s) of {made.code.name} along direction {args.direction}.")
    _report(made.files)
    return 0


def _run_attribute_edit(gen, ref, args) -> int:
    from ganforge.attributes import attribute_edit, edit_values, parse_attribute_edit
    from ganforge.explore import _output, save_gif
    from ganforge.generator import GeneratorError, save_image

    if isinstance(ref, str):
        raise GeneratorError("--attribute edits a seed's image (the latent stays, the attribute changes): give --seed.")
    name, start, stop = parse_attribute_edit(args.attribute)
    values = edit_values(gen, name, start, stop, args.steps)
    folder = _output(args.out, ["strip.png", "edit.gif"], args.overwrite)
    images = attribute_edit(gen, ref, name, values, truncation=args.truncation, label=args.label)
    import numpy as np

    from ganforge.pictures import labelled_rows

    row = np.stack([np.asarray(i)[..., None] if np.asarray(i).ndim == 2 else np.asarray(i) for i in images])
    save_image(labelled_rows([row], [f"{name} {values[0]}..{values[-1]}"], len(images)), folder / "strip.png")
    save_gif(images + images[-2:0:-1], folder / "edit.gif", args.fps)
    print(f"{len(images)} images of seed {ref}, {name} from {values[0]} to {values[-1]}.")
    _report([folder / "strip.png", folder / "edit.gif"])
    return 0


def _report(files, skipped: dict | None = None) -> None:
    for path in files:
        print(f"  {path}")
    for name, why in (skipped or {}).items():
        print(f"  (no {name}: {why})")
