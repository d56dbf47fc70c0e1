"""`ganforge release` and `ganforge verify`: thin layers over ganforge.provenance."""

from __future__ import annotations

import sys


def add_release_commands(commands) -> None:
    p = commands.add_parser(
        "release", help="build a release folder from a run: generator, audit, model card, hashes (private by default)",
        description="Build a release of RUN in --out: the exported generator, the memorisation audit, the health "
                    "summary, the metrics, a model card (README.md) and release.json with the SHA-256 of every file "
                    "and of the training data, signed with the model's key. Private unless --public, which needs a "
                    "--licence and is refused when the audit finds the generator copying its training images.")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--out", required=True, help="the release folder (new, or empty)")
    p.add_argument("--public", action="store_true", help="a public release: others may get it (needs --licence)")
    p.add_argument("--licence", "--license", dest="licence", help="the model's licence, e.g. CC-BY-NC-4.0")
    p.add_argument("--name", help="the release's name in its card and in verify's answers (default: the run's)")
    p.add_argument("--data-source", help="where the training images came from, in your words")
    p.add_argument("--data-licence", "--data-license", dest="data_licence", help="the training images' licence or terms")
    p.add_argument("--intended-use", help="what the model is for, in your words (for the card)")
    p.add_argument("--override-audit", metavar="REASON",
                   help="publish although the audit finds copying; the reason is written into the model card")
    p.add_argument("--data", help="the training dataset, when it moved since training")
    p.add_argument("--audit-count", type=int, default=1000, help="generated images the audit compares (default: %(default)s)")
    p.add_argument("--inception", metavar="PATH", help="the Inception weights file for the audit")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(handler=_run_release)

    p = commands.add_parser(
        "verify", help="which model made an image, with which seed, and whether its signature holds",
        description="Read the provenance of each IMAGE: the invisible mark ganforge hides in every image it makes "
                    "(model id and seed), and the signed metadata in its PNG file. Models made or released on this "
                    "machine are known by name; give others' release folders with --release. Exit status 0 when "
                    "every image was traced to a model with nothing contradicting it, 1 otherwise.")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--release", action="append", default=[], metavar="FOLDER",
                   help="a release (or exported model) folder whose key checks signatures; repeatable")
    p.add_argument("--json", action="store_true", help="print the findings as JSON")
    p.set_defaults(handler=_run_verify)


def _run_release(args) -> int:
    from ganforge.release.build import build_release

    release = build_release(args.run, args.out, public=args.public, licence=args.licence, name=args.name,
                            data_source=args.data_source, data_licence=args.data_licence,
                            intended_use=args.intended_use, override_audit=args.override_audit, data=args.data,
                            audit_count=args.audit_count, inception=args.inception, device=args.device,
                            progress=not args.quiet)
    print(release.summary())
    return 0


def _run_verify(args) -> int:
    from ganforge.release.verify import known_models, to_json, verify_image

    models = known_models(args.release)
    verdicts = [verify_image(image, models) for image in args.images]
    if args.json:
        print(to_json(verdicts))
    else:
        for verdict in verdicts:
            print("\n".join(verdict.lines()))
    if len(verdicts) > 1 and not args.json:
        traced = sum(v.ok for v in verdicts)
        print(f"{traced} of {len(verdicts)} image(s) traced to a model.", file=sys.stderr)
    return 0 if all(v.ok for v in verdicts) else 1
