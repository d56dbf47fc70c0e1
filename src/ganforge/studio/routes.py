"""The studio's Make, Watch and Translate routes (the app and the games are in `app.py`, Breed and steer in
`steering.py`)."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request, UploadFile
from fastapi.responses import FileResponse, Response, StreamingResponse

from ganforge.studio import security
from ganforge.studio.batcher import png_bytes
from ganforge.studio.folder import NAME, NotFound
from ganforge.studio.requests import read_json as _json
from ganforge.studio.requests import visible
from ganforge.studio.security import StudioError, is_owner

RESOLUTIONS = (16, 32, 64, 128, 256)
MAX_KIMG = 100_000
ZIP_MAX_MB = 2048  # a zip of a whole collection; each image in it is checked by prepare


def add_routes(app: FastAPI, studio) -> None:
    def owner(request: Request) -> None:
        if not is_owner(request):
            raise StudioError(403, "owner_only")

    # --- Make: upload, inspect, train -------------------------------------------------------------------

    @app.post("/api/datasets")
    async def upload_dataset(request: Request, resolution: int = 64, name: str = ""):
        """A zip of images, or a folder's files (the page's folder picker sends each with its relative path):
        stored under uploads/, never touched again, and prepared by a background job."""
        owner(request)
        if resolution not in RESOLUTIONS:
            raise StudioError(422, "bad_request", detail=f"resolution must be one of {', '.join(map(str, RESOLUTIONS))}")
        form = await request.form(max_files=100_000, max_part_size=security.MAX_UPLOAD_MB * 1024 * 1024)
        files = [f for f in form.getlist("file") if hasattr(f, "read")]
        if not files:
            raise StudioError(422, "bad_request", detail="send a zip, or the files of a folder, as 'file'")
        if len(files) == 1:
            data = await files[0].read(ZIP_MAX_MB * 1024 * 1024 + 1)
            if len(data) > ZIP_MAX_MB * 1024 * 1024:
                raise StudioError(413, "too_big", size=len(data) / 1024 / 1024, top=ZIP_MAX_MB)
            if not zipfile.is_zipfile(io.BytesIO(data)):
                raise StudioError(415, "not_zip")
            dataset = studio.folder.new_dataset_name(name or Path(files[0].filename or "dataset").stem)
            source = studio.folder.uploads / f"{dataset}.zip"
            source.write_bytes(data)  # prepare reads zips itself, skipping (and reporting) what is not an image
        else:
            first = Path(files[0].filename or "folder").parts
            dataset = studio.folder.new_dataset_name(name or (first[0] if len(first) > 1 else "folder"))
            source = studio.folder.uploads / dataset
            source.mkdir(parents=True)
            for k, upload in enumerate(files):
                # only the file's own name is kept (numbered): no path from the browser reaches the disk
                safe = "".join(c if c.isalnum() or c in "._-" else "-" for c in Path(upload.filename or "").name)
                (source / f"{k:06d}-{safe[:80] or 'file'}").write_bytes(await upload.read())
        job = studio.jobs.submit("prepare", {"source": str(source), "name": dataset, "resolution": resolution})
        return {"dataset": dataset, "job": job.id}

    @app.get("/api/datasets")
    def datasets(request: Request):
        owner(request)
        return {"datasets": studio.folder.dataset_names()}

    @app.get("/api/datasets/{name}")
    def inspect(name: str, request: Request):
        owner(request)
        from ganforge.data.format import PreparedDataset
        from ganforge.data.inspect import inspect_dataset

        path = studio.folder.dataset(name)
        if not (path / "contact-sheet.png").is_file():
            inspect_dataset(path)
        report = _read_json(path / "prepare-report.json")
        skipped = report.get("skipped") or []
        dataset = PreparedDataset(path)
        return {"name": name, "kind": dataset.kind, "count": len(dataset), "resolution": dataset.resolution,
                "channels": dataset.channels, "classes": dataset.class_names,
                "skipped": [{"file": s.get("source"), "reason": s.get("reason")} for s in skipped[:200]],
                "skipped_count": len(skipped), "contact_sheet": f"/api/datasets/{name}/contact-sheet.png"}

    @app.get("/api/datasets/{name}/contact-sheet.png")
    def contact_sheet(name: str, request: Request):
        owner(request)
        return FileResponse(studio.folder.dataset(name) / "contact-sheet.png", media_type="image/png")

    @app.get("/api/presets")
    def presets(request: Request):
        """The model families a training job can start from (the page's menu; none: the data's defaults)."""
        from ganforge.train.config import preset_names

        owner(request)
        return {"presets": list(preset_names())}

    @app.post("/api/jobs")
    async def start_job(request: Request):
        owner(request)
        body = await _json(request)
        if body.get("kind") != "train":
            raise StudioError(422, "bad_request", detail="kind must be 'train'")
        dataset = studio.folder.dataset(str(body.get("dataset", "")))
        kimg = body.get("kimg", 100)
        if isinstance(kimg, bool) or not isinstance(kimg, (int, float)) or not 0 < kimg <= MAX_KIMG:
            raise StudioError(422, "bad_request", detail=f"kimg must be a number above 0 and at most {MAX_KIMG:,}")
        preset = body.get("preset") or None
        if preset is not None:
            from ganforge.train.config import preset_names

            if preset not in preset_names():
                raise StudioError(422, "bad_request", detail=f"preset must be one of {', '.join(preset_names())}")
        job = studio.jobs.submit("train", {"dataset": dataset.name, "kimg": kimg, "preset": preset})
        return _job(job)

    @app.get("/api/jobs")
    def jobs(request: Request):
        owner(request)
        return {"jobs": [_job(j) for j in studio.jobs.list()]}

    @app.post("/api/jobs/{job_id}/stop")
    def stop(job_id: int, request: Request):
        owner(request)
        job = studio.jobs.stop(job_id)
        if job is None:
            raise StudioError(404, "not_found", what="job", name=str(job_id))
        return _job(studio.jobs.get(job_id))

    @app.post("/api/jobs/{job_id}/resume")
    def resume(job_id: int, request: Request):
        owner(request)
        job = studio.jobs.get(job_id)
        if job is None:
            raise StudioError(404, "not_found", what="job", name=str(job_id))
        resumed = studio.jobs.resume(job_id)
        if resumed is None:
            raise StudioError(409, "job_busy", status=job.status, action="resumed")
        return _job(resumed)

    @app.post("/api/runs/{name}/export")
    def export(name: str, request: Request):
        owner(request)
        studio.folder.run(name)
        return _job(studio.jobs.submit("export", {}, run=name))

    # --- Watch ------------------------------------------------------------------------------------------

    @app.get("/api/runs")
    def runs(request: Request):
        owner(request)
        return {"runs": [_run_state(studio.folder.run(n)) for n in studio.folder.run_names()]}

    @app.get("/api/runs/{name}")
    def run_state(name: str, request: Request):
        owner(request)
        return _run_state(studio.folder.run(name))

    @app.get("/api/runs/{name}/events")
    async def events(name: str, request: Request):
        """Server-sent events: the run's state whenever its log grows (no reload, no polling by the page)."""
        owner(request)
        run = studio.folder.run(name)

        async def stream():
            last = None
            for _ in range(3600):  # an hour at most; the page reconnects by itself
                if await request.is_disconnected():
                    break
                state = _run_state(run)
                marker = (state["images_seen"], state["grid"], state["status"])
                if marker != last:
                    last = marker
                    yield f"data: {json.dumps(state)}\n\n"
                else:
                    yield ": still here\n\n"
                await asyncio.sleep(1.0)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    @app.get("/api/runs/{name}/{picture}")
    def run_picture(name: str, picture: str, request: Request):
        owner(request)
        run = studio.folder.run(name)
        allowed = {"losses.png", "progress.gif", "reals.png", "augmentation.png", "health.png"}
        if picture == "grid.png":
            grids = sorted((run / "grids").glob("grid-*.png"))
            if not grids:
                raise StudioError(404, "not_found", what="grid", name=name)
            return FileResponse(grids[-1], media_type="image/png", headers={"Cache-Control": "no-store"})
        if picture not in allowed or not (run / picture).is_file():
            raise StudioError(404, "not_found", what="picture", name=picture)
        return FileResponse(run / picture, headers={"Cache-Control": "no-store"})

    # --- Translate ---------------------------------------------------------------------------------------

    @app.post("/api/models/{name}/translate")
    async def translate(name: str, request: Request, file: UploadFile, derive: bool = False):
        entry = visible(studio, request, name)
        if entry.task != "image-to-image":
            raise StudioError(422, "not_translator", name=name)
        data = await file.read(security.MAX_UPLOAD_MB * 1024 * 1024 + 1)
        image = security.read_upload_image(data)
        translator = studio.loaded(name, "translator")
        out = await asyncio.get_running_loop().run_in_executor(None, lambda: translator.translate_image(image, derive=derive))
        return Response(png_bytes(out, translator.stamp.metadata(np.asarray(out), None)), media_type="image/png",
                        headers={"Content-Disposition": f'inline; filename="{name}-translated.png"'})


def _job(job) -> dict:
    return {"id": job.id, "kind": job.kind, "status": job.status, "run": job.run, "args": job.args,
            "message": job.message, "created": job.created.isoformat() if job.created else None}


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _run_state(run: Path) -> dict:
    from ganforge.train.rundir import read_log

    ticks = [r for r in read_log(run) if "loss_D" in r] if (run / "log.jsonl").is_file() else []
    last = ticks[-1] if ticks else {}
    grids = sorted((run / "grids").glob("grid-*.png")) if (run / "grids").is_dir() else []
    metrics = []
    for line in (run / "metrics.jsonl").read_text().splitlines() if (run / "metrics.jsonl").is_file() else []:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        metrics.append({"images_seen": record.get("images_seen"), **(record.get("metrics") or {})})
    health = None
    if len(ticks) >= 4:
        try:
            from ganforge.metrics.health import diagnose

            diagnosis = diagnose(run)
            health = {"verdict": diagnosis.verdict, "summary": diagnosis.summary(),
                      "findings": [{"kind": f.kind, "title": f.title, "detail": f.detail} for f in diagnosis.findings]}
        except Exception:  # a log being written: next time
            health = None
    exported = (run / "generator" / "config.json").is_file()
    return {"name": run.name, "images_seen": last.get("images_seen", 0), "kimg": last.get("kimg", 0),
            "images_per_second": last.get("images_per_second"), "status": "exported" if exported else "trained",
            "losses": [{"kimg": r.get("kimg"), "loss_D": r.get("loss_D"), "loss_G": r.get("loss_G"),
                        "r_t": r.get("r_t"), "p": r.get("ada_p", r.get("p"))} for r in ticks[-200:]],
            "metrics": metrics, "health": health, "grid": grids[-1].name if grids else None,
            "exported": exported and NAME.fullmatch(run.name) is not None}


__all__ = ["add_routes", "NotFound"]
