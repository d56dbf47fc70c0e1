"""`ganforge release RUN --out DIR`: releasing a model as a deliberate act, with the evidence in front of
its owner.

The release folder holds the exported generator (its config marked public or private), the memorisation
audit, the health summary, the metrics with their protocol, a model card with the sections of Mitchell
et al. (2019), and `release.json`: the SHA-256 of every file in the folder and of the training data,
signed with the model's key. Private by default. `public=True` needs a licence and is refused when the
audit finds the generator copying its training images, unless the owner overrides it on purpose with a
reason (which the card then states). A public release never includes the audit's closest-pairs picture:
it shows training images, which is what the owner may be protecting.

The audit is the slow part (Inception features of about 12,000 images). One already in RUN/audit for the
same checkpoint is reused; otherwise it runs and is kept there, so a refused release costs it once.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ganforge import __version__
from ganforge.errors import GanforgeError
from ganforge.files import file_sha256, write_json_atomic, write_text_atomic
from ganforge.provenance import sign
from ganforge.release.card import release_card

AUDIT_FILES = ("audit.md", "audit.json", "distances.png", "closest-pairs.png")
PRIVATE_ONLY = ("closest-pairs.png",)  # shows training images next to generated ones


class ReleaseError(GanforgeError, ValueError):
    pass


@dataclass
class Release:
    folder: Path
    model_id: str
    public: bool
    verdict: str
    record: dict = field(repr=False, default_factory=dict)

    def summary(self) -> str:
        kind = "public" if self.public else "private"
        return (f"Released model {self.model_id} ({kind}) to {self.folder}. Audit: {self.verdict}. "
                f"Read {self.folder / 'README.md'} before sharing it.")


def build_release(run: str | os.PathLike, out: str | os.PathLike, *, public: bool = False, licence: str | None = None,
                  name: str | None = None, data_source: str | None = None, data_licence: str | None = None,
                  intended_use: str | None = None, override_audit: str | None = None, data: str | os.PathLike | None = None,
                  audit_count: int = 1000, reference_count: int = 10_000, extractor=None, inception=None,
                  device: str = "auto", progress: bool = True) -> Release:
    """Build the release folder `out` from `run` (see the module docstring). `extractor`/`inception` go to the
    audit (a feature function for tests; the FID Inception weights otherwise)."""
    run, out = Path(run), Path(out)
    if not (run / "checkpoints").is_dir():
        raise ReleaseError(f"{run} is not a ganforge run folder (runs/NNNNN-...): a release is built from the run, "
                           "so that its audit, health and data can be checked.")
    if public and not (licence and licence.strip()):
        raise ReleaseError("A public release needs a licence: say under which terms others may use the model, e.g. "
                           "--licence CC-BY-NC-4.0 (and --data-licence for the training images' terms).")
    if override_audit is not None and not override_audit.strip():
        raise ReleaseError("--override-audit needs a reason in words; it is written into the model card.")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ReleaseError(f"{out} already exists and is not empty: a release never writes over files. Choose a new "
                           "folder (releases are kept side by side, e.g. releases/textiles-v2).")
    exported = _exported(run)
    config = json.loads((exported / "config.json").read_text(encoding="utf-8"))
    audit, audit_folder = _audit(run, exported, config, data, audit_count, reference_count, extractor, inception,
                                 device, progress)
    verdict = audit["verdict"]
    if public and verdict == "copying" and override_audit is None:
        raise ReleaseError(_refusal(audit, audit_folder))
    health = _health(run)
    data_folder = Path(data) if data else Path(config["training"]["dataset"])
    data_record = {"folder": str(data_folder), "source": data_source, "licence": data_licence,
                   **(config["training"].get("data_summary") or {}), "sha256": dataset_sha256(data_folder)}

    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    shutil.copytree(exported, staging / "generator")
    provenance = config["provenance"]
    provenance.update({"public": public, "name": name or provenance.get("name") or run.name})
    if public:
        provenance["mark"] = True  # a public release always marks its images
    write_text_atomic(staging / "generator" / "config.json", json.dumps(config, indent=1) + "\n")
    (staging / "audit").mkdir()
    for file in AUDIT_FILES:
        if (audit_folder / file).is_file() and not (public and file in PRIVATE_ONLY):
            shutil.copy2(audit_folder / file, staging / "audit" / file)
    write_json_atomic(staging / "health.json", health)
    write_json_atomic(staging / "metrics.json", config.get("metrics") or {})
    record = {"format": "ganforge.release", "version": 1, "release_id": provenance["model_id"],
              "name": provenance["name"], "public": public, "licence": licence, "created":
              datetime.now(timezone.utc).isoformat(timespec="seconds"), "ganforge_version": __version__,
              "run": str(run.resolve()), "intended_use": intended_use, "audit": {"verdict": verdict,
              "override": override_audit, "checkpoint": audit.get("setup", {}).get("checkpoint")},
              "health": health["verdict"], "data": data_record, "public_key": provenance["public_key"]}
    write_text_atomic(staging / "README.md", release_card(config, record, audit, health))
    record["files"] = {str(p.relative_to(staging)): file_sha256(p) for p in sorted(staging.rglob("*")) if p.is_file()}
    write_json_atomic(staging / "release.json", record)
    identity = sign.identity_of(provenance)
    if identity is not None and identity.can_sign:
        (staging / "release.sig").write_text(sign.sign(record, identity.private_key) + "\n", encoding="ascii")
    if out.exists():
        out.rmdir()  # empty, checked above
    os.replace(staging, out)  # the release appears whole, or not at all
    sign.register(provenance["model_id"], provenance["public_key"], provenance["name"], out / "generator",
                  release=str(out.resolve()), public=public)
    return Release(out, provenance["model_id"], public, verdict, record)


def check_release(folder: str | os.PathLike) -> list[str]:
    """What is wrong with a release folder: files changed since release, a signature that does not hold.
    An empty list when it is intact."""
    folder = Path(folder)
    try:
        record = json.loads((folder / "release.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return [f"{folder} has no readable release.json: it is not a ganforge release"]
    problems = []
    for name, digest in record.get("files", {}).items():
        path = folder / name
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif file_sha256(path) != digest:
            problems.append(f"{name} was changed after the release")
    signature = folder / "release.sig"
    if signature.is_file():
        if not sign.signature_holds(record, signature.read_text(encoding="ascii").strip(), record.get("public_key", "")):
            problems.append("release.sig does not hold: release.json was altered")
    return problems


def dataset_sha256(folder: Path) -> str | None:
    """One digest of a prepared dataset: SHA-256 over each file's relative path and SHA-256, in order."""
    if not folder.is_dir():
        return None  # moved since training: the release says so rather than guessing
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(folder).as_posix()}\0{file_sha256(path)}\n".encode())
    return digest.hexdigest()


def _exported(run: Path) -> Path:
    """RUN/generator when it is current and has an identity; exported again otherwise."""
    from ganforge.export import export_generator
    from ganforge.generator import stale_export

    folder = run / "generator"
    try:
        current = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        current = None
    if current is None or "provenance" not in current or stale_export(run) is not None:
        folder = export_generator(run, folder)
    return folder


def _audit(run, exported, config, data, count, reference_count, extractor, inception, device, progress):
    from ganforge.metrics.audit import audit_generator

    # the run's own audit lives in RUN/audit (where `ganforge audit RUN` writes it); one against other data
    # beside it, so neither replaces the other
    folder = run / "audit" if data is None else run / "audit" / f"against-{Path(data).name}"
    training = Path(data if data is not None else config["training"]["dataset"]).resolve()
    try:
        earlier = json.loads((folder / "audit.json").read_text(encoding="utf-8"))
        if (earlier["setup"]["checkpoint"] == config["training"]["checkpoint"]
                and Path(earlier["setup"]["training"]).resolve() == training):
            return earlier, folder
    except (OSError, ValueError, KeyError, TypeError):
        pass
    result = audit_generator(exported, data, count=count, reference_count=reference_count, out=folder,
                             extractor=extractor, inception=inception, device=device, progress=progress)
    return result.to_dict(), folder


def _health(run: Path) -> dict:
    from ganforge.metrics.health import diagnose

    try:
        diagnosis = diagnose(run)
    except GanforgeError as err:
        return {"verdict": "unknown", "summary": str(err), "findings": []}
    return {"verdict": diagnosis.verdict, "summary": diagnosis.summary(),
            "findings": [{"kind": f.kind, "title": f.title, "detail": f.detail} for f in diagnosis.findings],
            "best_kid": diagnosis.best[0] if diagnosis.best else None, "kid_name": diagnosis.kid_name}


def _refusal(audit: dict, folder: Path) -> str:
    feature = audit.get("feature", {})
    closest = feature.get("generated", {})
    return (f"Refused: the memorisation audit says this generator copies its training images "
            f"({feature.get('near_duplicate_share', 0):.0%} of its images are closer to a training image than "
            f"99 % of unseen real images are; the closest is at feature distance {closest.get('min', float('nan')):.3g} "
            f"against a near-duplicate threshold of {feature.get('near_duplicate_threshold', float('nan')):.3g}). "
            f"The closest pairs are in {folder / 'closest-pairs.png'}, the whole report in {folder / 'audit.md'}. "
            "Publishing it would publish those images. Train on more images, stop earlier or augment "
            "(augment=ada), then release again. To publish it anyway, on purpose, add --override-audit \"your "
            "reason\": the reason is written into the model card.")
