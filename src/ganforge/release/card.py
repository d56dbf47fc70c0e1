"""The release's model card, README.md, in the sections of Mitchell et al. (2019), "Model Cards for Model
Reporting": model details, intended use, out-of-scope use, training data, evaluation, the memorisation
audit, ethical considerations, caveats and recommendations. Every value comes from the run, the export,
the audit or what the owner stated; nothing is left as a placeholder."""

from __future__ import annotations

NOT_STATED = "not stated by the owner"


def release_card(config: dict, record: dict, audit: dict, health: dict) -> str:
    model = config.get("config") or {}
    training = config["training"]
    data = record["data"]
    provenance = config["provenance"]
    resolution = config.get("resolution") or model.get("resolution")
    kind = "image-to-image model" if config.get("task") == "image-to-image" else "GAN generator"
    lines = [
        f"# {record['name']}: model card", "",
        f"**{'Public' if record['public'] else 'Private'} release** of a {kind}, made with ganforge "
        f"{record['ganforge_version']} on {record['created']}. Release id `{record['release_id']}`.", "",
        "## Model details", "",
        f"- Architecture: `{config['architecture']}`" + (f", {resolution} px" if resolution else "")
        + (f", {config.get('channels')} channel(s)" if config.get("channels") else ""),
        f"- Classes: {', '.join(map(str, config['classes']))}" if config.get("classes") else "- Classes: none (unconditional)",
        f"- Trained on {training['images_seen'] / 1000:.1f} thousand images shown with the `{training['loss']}` loss; "
        f"checkpoint `{training['checkpoint']}`",
        f"- Licence: {record['licence'] or 'none: a private release, not licensed to anyone'}",
        "- Files: `generator/` (config.json + model.safetensors, loadable with "
        "`ganforge.Generator.from_pretrained`; opening it runs no code), `audit/`, `health.json`, `metrics.json`, "
        "`release.json` (SHA-256 of every file and of the training data, signed in `release.sig` when the owner's key is here)",
        f"- Provenance: every image this model makes through ganforge carries an invisible mark with the release id "
        f"and its seed{' (switched off by the owner)' if not provenance.get('mark', True) else ''}; "
        "`ganforge verify IMAGE` reads it.", "",
        "## Intended use", "",
        record.get("intended_use") or ("Making new images in the style of the training data, exploring its latent "
                                        "space, and research on generative models."), "",
        "## Out-of-scope use", "",
        "- Passing its images off as photographs or as the work of the people whose images it learned from.",
        "- Reproducing, selling or claiming the designs of the training collection: the model learned them from "
        "their makers.",
        "- Making images of real, identifiable people without their consent.",
        "- Any use the licence above does not grant.", "",
        "## Training data", "",
        f"- Source: {data.get('source') or NOT_STATED}",
        f"- Licence of the images: {data.get('licence') or NOT_STATED}",
        f"- Prepared dataset `{data.get('name') or data['folder']}`: "
        + (f"{data['images']:,} images at {data.get('resolution')} px, {data.get('channels')} channel(s)"
           if data.get("images") else "its summary was not found"),
        f"- SHA-256 of the prepared dataset: `{data['sha256']}`" if data.get("sha256") else
        "- The prepared dataset is no longer where training read it, so its digest could not be recorded.", "",
        "## Evaluation", "",
    ]
    metrics = {k: v for k, v in (config.get("metrics") or {}).items() if not k.endswith("_std")}
    if metrics:
        lines += ["| metric | value | at kimg | protocol | against |", "|---|---|---|---|---|"]
        lines += [f"| {k} | {v['value']:.4g} | {(v.get('images_seen') or 0) / 1000:.1f} | {v.get('protocol')} | "
                  f"{v.get('reference')} |" for k, v in metrics.items()]
    else:
        lines += ["No metric was measured. Run `ganforge eval RUN` and release again to report FID and KID."]
    lines += ["", f"Training health: **{health['verdict']}**. {health.get('summary', '')}"]
    lines += [f"- {f['title']} ({f['kind']}): {f['detail']}" for f in health.get("findings", [])]
    override = record["audit"].get("override")
    lines += [
        "", "## Memorisation audit", "",
        f"Verdict: **{audit['verdict']}**" + (f" (C_T = {audit['c_t']:.2f})" if audit.get("c_t") is not None else "") + ".",
        *[f"- {reason}" for reason in audit.get("reasons", [])],
        *[f"- Note: {note}" for note in audit.get("notes", [])],
        "",
        f"**The owner released it although the audit found copying.** Their reason: {override}" if override else "",
        "The full report is in `audit/audit.md`." + (" Its closest-pairs picture is left out of a public release: it "
                                                      "shows training images." if record["public"] else ""), "",
        "## Ethical considerations", "",
        "- A generator carries its training collection in its weights. When the images belong to a community or "
        "an artist (textiles, crafts, personal work), publishing the model can let others appropriate their designs; "
        "keeping it private is a legitimate choice, and ganforge's default.",
        "- It reproduces the gaps and biases of its training data, and cannot make what it did not see.",
        "- Images it makes are not photographs of anything real; say they are generated when you share them.", "",
        "## Caveats and recommendations", "",
        "- Metrics measured on few images are noisy (FID is biased upward below 10,000 images); compare models "
        "under the same protocol only.",
        "- The audit detects copies in the feature space it uses; it cannot prove that no training image can "
        "be recovered.",
        "- The provenance mark survives JPEG compression and resizing, not crops or rotations, and a determined "
        "person can remove it; the signature in release.sig proves what this release contains.", "",
    ]
    return "\n".join(line for line in lines if line is not None)
