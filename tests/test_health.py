"""Training health: periodic KID with the best checkpoint and patience, the diagnosis rules, compare, eval."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ganforge.cli import main
from ganforge.metrics.compare import compare_runs
from ganforge.metrics.evaluate import read_metrics
from ganforge.metrics.health import diagnose, write_health_report
from ganforge.train import checkpoint as ckpt
from ganforge.metrics import monitor as health
from ganforge.api import train_gan

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
TINY = {"model.g_width": 8, "model.d_width": 8, "model.z_dim": 16, "batch_size": 16, "tick_kimg": 0.032,
        "grid_size": 10, "precision": "fp32", "ema_kimg": 0.1, "eval_images": 16}


@pytest.fixture(autouse=True)
def inception(monkeypatch, tmp_path):
    monkeypatch.setenv("GANFORGE_INCEPTION", str(SHARED / "inception" / "fid-inception-v3-pool3.pt"))
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))


def test_training_evaluates_keeps_the_best_and_stops_when_patience_runs_out(digits, tmp_path, monkeypatch):
    kids = iter([0.5, 0.3, 0.4, 0.45, 0.2, 0.1])  # best at the 2nd evaluation, then two worse ones
    monkeypatch.setattr(health, "kernel_inception_distance", lambda *a, **k: (next(kids), 0.01), raising=False)
    overrides = {**TINY, "eval_minutes": 1e-6, "patience": 2, "kimg": 1, "runs_dir": str(tmp_path / "runs")}
    result = train_gan(digits, preset="dcgan-small", overrides=overrides, progress=False)
    assert result.stopped_by == "patience"
    records = [r for r in read_metrics(result.run_dir) if r.get("source") == "training"]
    assert [r["metrics"]["kid16"] for r in records] == [0.5, 0.3, 0.4, 0.45]
    assert {"distinct_neighbours", "diversity"} <= set(records[0]["metrics"])
    best = ckpt.load_checkpoint(result.run_dir / "checkpoints" / ckpt.BEST)
    assert best["images_seen"] == records[1]["images_seen"]
    assert best["callbacks"]["health"]["best"] == [0.3, records[1]["images_seen"]]
    diagnosis = diagnose(result.run_dir)
    assert diagnosis.best == (0.3, records[1]["images_seen"])
    assert any(f.title in ("No longer improving", "Oscillating without progress") for f in diagnosis.findings)


def test_eval_command_on_a_run_appends_to_its_metrics(digits, tmp_path, capsys):
    result = train_gan(digits, preset="dcgan-small", overrides={**TINY, "kimg": 0.1, "runs_dir": str(tmp_path / "runs")},
                       progress=False)
    assert main(["eval", str(result.run_dir), "--metrics", "fid,kid,pr", "--count", "16", "--reference-count", "32",
                 "--json", "-q", "--device", "cpu"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["fid16"] > 0 and printed["reference_images"] == 32
    logged = read_metrics(result.run_dir)[-1]
    assert logged["metrics"]["kid16"] == printed["kid16"]
    assert logged["images_seen"] == result.images_seen and logged["reference"] == str(digits.resolve())
    assert main(["eval", str(result.run_dir), "--metrics", "fid,bogus"]) == 2  # a clear error, not a traceback
    code = main(["audit", str(result.run_dir), "--count", "12", "--reference-count", "40", "-q", "--device", "cpu"])
    assert code in (0, 1)  # 1 would mean "copying": a tiny run can hardly be judged, but the report must exist
    report = (result.run_dir / "audit" / "audit.md").read_text()
    assert "verdict" in report.lower() and (result.run_dir / "audit" / "closest-pairs.png").is_file()


# --- the diagnosis rules on hand-written logs ----------------------------------------------------------


def write_run(folder: Path, ticks: list[dict], kids: list[float] | None = None, spread: float = 1.0) -> Path:
    folder.mkdir(parents=True)
    rows = [{"tick": i, "images_seen": 1000 * (i + 1), "train_seconds": 10.0 * (i + 1), **t} for i, t in enumerate(ticks)]
    (folder / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    evals = [{"images_seen": 4000 * (i + 1), "metrics": {"kid500": k, "distinct_neighbours": spread, "diversity": 1.0}}
             for i, k in enumerate(kids or [])]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in evals))
    return folder


HEALTHY = {"loss_D": 1.2, "loss_G": 0.9, "D_accuracy": 0.65, "r_t": 0.2, "grad_G": 3.0}


def test_diagnosis_continue_while_kid_falls(tmp_path):
    run = write_run(tmp_path / "run", [HEALTHY] * 16, kids=[0.3, 0.2, 0.1])
    assert diagnose(run).verdict == "continue"


def test_diagnosis_stop_on_a_plateau(tmp_path):
    run = write_run(tmp_path / "run", [HEALTHY] * 24, kids=[0.3, 0.1, 0.2, 0.15, 0.12])
    diagnosis = diagnose(run)
    assert diagnosis.verdict == "stop" and diagnosis.best == (0.1, 8000)


def test_diagnosis_overpowering_discriminator(tmp_path):
    run = write_run(tmp_path / "run", [HEALTHY] * 8 + [{**HEALTHY, "D_accuracy": 0.97, "r_t": 0.9}] * 8)
    diagnosis = diagnose(run)
    assert diagnosis.verdict == "change"
    assert any("augment=" in f.detail for f in diagnosis.findings)


def test_diagnosis_vanishing_gradients_and_collapse(tmp_path):
    ticks = [HEALTHY] * 8 + [{**HEALTHY, "grad_G": 1e-4}] * 8
    diagnosis = diagnose(write_run(tmp_path / "run", ticks, kids=[0.3, 0.2], spread=0.2))
    titles = {f.title for f in diagnosis.findings}
    assert diagnosis.verdict == "change"
    assert {"The generator's gradients have vanished", "The samples look collapsed"} <= titles


def test_report_and_compare_write_pictures(tmp_path):
    a = write_run(tmp_path / "a", [HEALTHY] * 16, kids=[0.3, 0.2, 0.1])
    b = write_run(tmp_path / "b", [HEALTHY] * 16, kids=[0.4, 0.35, 0.3])
    diagnosis, report = write_health_report(a)
    assert "Still improving" in report.read_text() and (a / "health.png").stat().st_size > 1000
    table, picture = compare_runs([a, b], tmp_path / "compare.png")
    assert "| a | 0.1 (12.0) |" in table and "| b | 0.3 (12.0) |" in table
    assert picture.stat().st_size > 1000
