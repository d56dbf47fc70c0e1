"""The memorisation audit's report: audit.md, audit.json, closest-pairs.png and distances.png.

It takes the `AuditResult` of `metrics.audit`, which imports this module; this one does not import it
back (the functions below take that result without naming its type).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ganforge.metrics.audit_rules import COPYING_Z, MIN_CELL_GENERATED, NEAR_PERCENTILE, PAIR_ROWS, UNDERFITTING_Z


def closest_pairs_picture(pairs: dict[str, tuple[np.ndarray, np.ndarray]]):
    """Four rows, nearest pair first: generated over nearest training, in features then in pixels."""
    from ganforge.pictures import labelled_rows

    rows = [pairs["feature"][0], pairs["feature"][1], pairs["pixel"][0], pairs["pixel"][1]]
    return labelled_rows(rows, list(PAIR_ROWS), columns=len(rows[0]))


def distances_picture(result, path: Path) -> None:
    # no pyplot: no global state, no display needed
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 3.6), layout="constrained")
    for ax, space, title in zip(figure.subplots(1, 2), (result.feature, result.pixel), ("features", "pixels")):
        bins = np.histogram_bin_edges(np.concatenate([space.generated, space.heldout]), bins=40)
        ax.hist(space.heldout, bins=bins, density=True, alpha=0.6, label="held-out real -> training")
        ax.hist(space.generated, bins=bins, density=True, alpha=0.6, label="generated -> training")
        ax.axvline(space.threshold, color="k", linestyle="--", linewidth=1, label=f"near-duplicate ({NEAR_PERCENTILE:g}%)")
        ax.set(title=f"Nearest training image, {title}", xlabel="distance", ylabel="density")
        ax.legend(fontsize=8)
    figure.savefig(path, dpi=100)


def write_report(result, out: str | os.PathLike) -> dict[str, str]:
    """audit.md, audit.json, closest-pairs.png and distances.png in `out`; returns their paths."""
    from ganforge.files import write_json_atomic, write_text_atomic

    out = Path(out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    closest_pairs_picture(result.pairs).save(out / "closest-pairs.png")
    distances_picture(result, out / "distances.png")
    result.files = {name: str(out / name) for name in ("audit.md", "audit.json", "closest-pairs.png", "distances.png")}
    write_json_atomic(out / "audit.json", result.to_dict())
    write_text_atomic(out / "audit.md", _markdown(result))
    return result.files


def _markdown(result) -> str:
    s, f, p = result.setup, result.feature.to_dict(), result.pixel.to_dict()
    c_t = "not computed" if result.c_t is None else f"{result.c_t:.2f}"
    k = len(result.pairs["feature"][0])
    held = ("unseen by the generator" if s["heldout_unseen"] else "which the generator saw")
    inputs = (f"Generated: `{s['generated']}` ({s['generated_kind']}), {s['generated_count']} images. Training: "
              f"`{s['training']}`, {s['reference']} of {s['training_available']} images. Held-out: {s['heldout']}, "
              f"{s['heldout_count']} images, {held}. Seed {s['seed']}.")
    near = (f"A near-duplicate is closer than {100 - NEAR_PERCENTILE:g}% of held-out real images are (features: "
            f"< {f['near_duplicate_threshold']:.4g}; pixels: < {p['near_duplicate_threshold']:.4g}). Only the feature "
            "share decides the verdict: pixel L2 rewards blur and flat colour.")
    test = (f"C_T = **{c_t}** over {s['cells']} k-means cells of the training features: in each cell the "
            "Mann-Whitney Z of generated vs held-out distances to the cell's nearest training image, averaged with "
            f"the cell's share of held-out images as weight over cells with more than {MIN_CELL_GENERATED} generated "
            f"images. Below {COPYING_Z:g}: copying; above {UNDERFITTING_Z:g}: underfitting.")
    lines = [f"# Memorisation audit: {result.verdict}", "", *[f"- {r}" for r in result.reasons], "", inputs, "",
             "## Distances to the nearest training image", "",
             "| space | images | min | 1% | 5% | median | near-duplicates |", "|---|---|---|---|---|---|---|"]
    for name, d in ((f"features ({s['features']})", f), (f"pixels ({s['pixels']})", p)):
        for who, q, dup in (("generated", d["generated"], f"{d['near_duplicate_share']:.1%}"),
                            ("held-out real", d["heldout"], "")):
            lines.append(f"| {name} | {who} | {q['min']:.4g} | {q['p1']:.4g} | {q['p5']:.4g} | {q['median']:.4g} | {dup} |")
    lines += ["", near, "", "![distances](distances.png)", "", "## Closest pairs", "",
              (f"The {k} generated images nearest the training set, nearest on the left, each above its nearest "
               "training image; the distances of each row's pairs, left to right:"), "",
              "![closest pairs](closest-pairs.png)", "", "| pair | features | pixels |", "|---|---|---|"]
    fd, pd = np.sort(result.feature.generated), np.sort(result.pixel.generated)
    lines += [f"| {i + 1} | {fd[i]:.4g} | {pd[i]:.4g} |" for i in range(k)]
    lines += ["", "## Data-copying test (Meehan, Chaudhuri & Dasgupta, AISTATS 2020)", "", test, "",
              "| cell | training | held-out | generated | Z |", "|---|---|---|---|---|"]
    lines += [f"| {c['cell']} | {c['reference']} | {c['heldout']} | {c['generated']} | "
              f"{'left out' if c['z'] is None else format(c['z'], '.2f')} |" for c in result.test.cells]
    if result.notes:
        lines += ["", "## Limits", "", *[f"- {n}" for n in result.notes]]
    return "\n".join(lines) + "\n"
