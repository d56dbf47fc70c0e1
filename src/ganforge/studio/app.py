"""The studio's FastAPI application: pages (static files, no build step) and the JSON/PNG API they call.

`create_app(folder, ...)` builds it; `ganforge studio` serves it with uvicorn. Every route is a thin layer
over ganforge's Python API (Generator, Translator, explore.breed, the jobs' `ganforge` processes).
Make, Watch and Translate live in `routes.py`, Breed and steer in `steering.py`; this file has the app,
the models, This X does not exist and Which is real.
"""

from __future__ import annotations

import csv
import io
import math
import os
import random
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from sqlalchemy import func, select
from starlette.exceptions import HTTPException as StarletteHTTPException

from ganforge.studio import security
from ganforge.studio.batcher import Batcher, png_bytes
from ganforge.studio.db import Answer, ModelSetting, Round, database_url, open_database
from ganforge.studio.folder import NotFound, StudioFolder
from ganforge.studio.jobs import Jobs
from ganforge.studio.requests import read_json as _json
from ganforge.studio.requests import visible
from ganforge.studio.routes import add_routes
from ganforge.studio.steering import add_steering_routes
from ganforge.studio.security import StudioError, check_seed, check_truncation, error_response, is_owner
from ganforge.studio.words import LANGUAGES, WORDS

STATIC = Path(__file__).parent / "static"
PAGES = ("", "make", "watch", "dream", "game", "breed", "lineage", "translate")  # one page.html; studio.js reads the address


@dataclass
class Studio:
    folder: StudioFolder
    sessions: object
    batcher: Batcher
    jobs: Jobs
    device: str = "auto"
    _loaded: dict = field(default_factory=dict)
    _settings: dict = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def loaded(self, name: str, kind: str = "generator"):
        """A Generator (or Translator) for a model, loaded once and again only when its export changes."""
        from ganforge.generator import Generator
        from ganforge.translator import Translator

        entry = self.folder.model(name)
        stamp = (entry.path / "config.json").stat().st_mtime_ns
        with self._lock:
            cached = self._loaded.get((name, kind))
            if cached is None or cached[0] != stamp:
                loader = Generator if kind == "generator" else Translator
                cached = (stamp, loader.from_pretrained(entry.path, device=self.device))
                self._loaded[(name, kind)] = cached
            return cached[1]

    def setting(self, name: str) -> ModelSetting:
        """The owner's settings for a model (kept in memory; `forget` after a change)."""
        cached = self._settings.get(name)
        if cached is None:
            with self.sessions() as s:
                cached = s.get(ModelSetting, name) or ModelSetting(name=name, shareable=False, show_real=False)
            self._settings[name] = cached
        return cached

    def forget(self, name: str) -> None:
        self._settings.pop(name, None)


def create_app(folder: str | os.PathLike, *, database: str | None = None, token: str | None = None,
               rate: float = 20.0, device: str = "auto", run_jobs: bool = True, parallel_jobs: int = 1) -> FastAPI:
    root = StudioFolder(folder)
    sessions = open_database(database_url(root.root, database))
    studio = Studio(root, sessions, Batcher(), Jobs(root, sessions, parallel=parallel_jobs), device)
    app = FastAPI(title="ganforge studio", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.studio = studio
    app.add_middleware(security.Guard, token=token, rate=rate)
    _errors(app)
    _pages(app)
    _model_routes(app, studio)
    _game_routes(app, studio)
    add_routes(app, studio)
    add_steering_routes(app, studio)
    if run_jobs:
        app.router.on_startup.append(studio.jobs.start)
        app.router.on_shutdown.append(studio.jobs.close)
    app.router.on_shutdown.append(studio.batcher.close)
    return app


# --- errors: a sentence in the person's language, never a traceback -----------------------------------


def _errors(app: FastAPI) -> None:
    @app.exception_handler(StudioError)
    async def studio_error(request: Request, err: StudioError):
        return error_response(request, err.status, err.key, **err.values)

    @app.exception_handler(NotFound)
    async def not_found(request: Request, err: NotFound):
        return error_response(request, 404, "not_found", what="model, run or dataset", name=str(err))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError):
        problems = "; ".join(f"{'.'.join(map(str, e.get('loc', ())[1:])) or 'body'}: {e.get('msg')}" for e in err.errors())
        return error_response(request, 422, "bad_request", detail=problems[:300])

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException):
        if err.status_code == 404:
            return error_response(request, 404, "not_found", what="page", name=request.url.path)
        return error_response(request, err.status_code, "bad_request", detail=str(err.detail)[:300])

    @app.exception_handler(Exception)
    async def crash(request: Request, err: Exception):
        import traceback

        from ganforge.errors import GanforgeError

        if isinstance(err, GanforgeError):  # a user's mistake the library explains: say it
            return JSONResponse({"error": str(err), "code": "ganforge"}, status_code=400, headers=security.HEADERS)
        traceback.print_exception(err)  # the log has the details; the person gets a sentence
        return error_response(request, 500, "server")


# --- pages ---------------------------------------------------------------------------------------------


def _pages(app: FastAPI) -> None:
    @app.get("/static/{name}")
    def static(name: str):
        path = STATIC / name
        if "/" in name or name.startswith(".") or not path.is_file():
            raise StudioError(404, "not_found", what="file", name=name)
        return FileResponse(path)

    def page(name: str):
        def serve():
            return FileResponse(STATIC / "page.html", headers={"Cache-Control": "no-cache"})
        return serve

    for route in PAGES:
        app.get(f"/{route}", include_in_schema=False)(page(route))
        if route:
            app.get(f"/{route}/{{item}}", include_in_schema=False)(page(route))

    @app.get("/api/words")
    def words(request: Request, lang: str | None = None):
        chosen = security.request_language(request) if lang not in LANGUAGES else lang
        return {"lang": chosen, "words": WORDS[chosen], "languages": list(LANGUAGES)}


# --- models and This X does not exist ------------------------------------------------------------------


def _model_routes(app: FastAPI, studio: Studio) -> None:
    @app.get("/api/models")
    def models(request: Request):
        owner = is_owner(request)
        out = []
        for name, entry in studio.folder.models().items():
            setting = studio.setting(name)
            if owner or setting.shareable:
                out.append({**entry.summary(), "shareable": setting.shareable, "show_real": setting.show_real})
        return {"models": out, "owner": owner}

    @app.post("/api/models/{name}/settings")
    async def settings(name: str, request: Request):
        if not is_owner(request):
            raise StudioError(403, "owner_only")
        studio.folder.model(name)
        body = await _json(request)
        with studio.sessions.begin() as s:
            setting = s.get(ModelSetting, name) or ModelSetting(name=name, shareable=False, show_real=False)
            for key in ("shareable", "show_real"):
                if key in body:
                    if not isinstance(body[key], bool):
                        raise StudioError(422, "bad_request", detail=f"{key} must be true or false")
                    setattr(setting, key, body[key])
            s.add(setting)
        studio.forget(name)
        return {"name": name, "shareable": setting.shareable, "show_real": setting.show_real}

    @app.get("/api/models/{name}/image.png")
    async def image(name: str, request: Request, seed: int, truncation: float = 1.0, download: bool = False):
        entry = visible(studio, request, name)
        if entry.task == "image-to-image":
            raise StudioError(422, "not_generator", name=name)
        gen = studio.loaded(name)
        data = await studio.batcher.image(name, gen, check_seed(seed), check_truncation(truncation))
        disposition = "attachment" if download else "inline"
        return Response(data, media_type="image/png", headers={
            "Content-Disposition": f'{disposition}; filename="{name}-seed{seed}.png"', "Cache-Control": "max-age=3600"})

    @app.get("/api/models/{name}/random")
    def random_seed(name: str, request: Request):
        visible(studio, request, name)
        return {"seed": secrets.randbelow(security.MAX_SEED + 1)}


# --- Which is real? ------------------------------------------------------------------------------------


def _game_routes(app: FastAPI, studio: Studio) -> None:
    def reals(name: str):
        from ganforge.data.format import PreparedDataset

        entry = studio.folder.model(name)
        return PreparedDataset(Path(entry.config["training"]["dataset"]))

    @app.post("/api/game/{name}/round")
    def new_round(name: str, request: Request):
        visible(studio, request, name)
        if not studio.setting(name).show_real:
            raise StudioError(403, "no_real", name=name)
        count = len(reals(name))
        player = request.cookies.get("player") or secrets.token_hex(8)
        with studio.sessions.begin() as s:
            game = Round(id=secrets.token_hex(12), model=name, real_side=random.choice(("left", "right")),
                         real_index=random.randrange(count), seed=secrets.randbelow(security.MAX_SEED + 1), player=player)
            s.add(game)
        response = JSONResponse({"round": game.id, "left": f"/api/game/rounds/{game.id}/left.png",
                                 "right": f"/api/game/rounds/{game.id}/right.png"})
        response.set_cookie("player", player, httponly=True, samesite="strict", max_age=3600 * 24 * 365)
        return response

    @app.get("/api/game/rounds/{round_id}/{side}.png")
    async def round_image(round_id: str, side: str, request: Request):
        game = _round(studio, round_id)
        visible(studio, request, game.model)
        if side not in ("left", "right"):
            raise StudioError(422, "side")
        if side == game.real_side:
            from PIL import Image

            pixels = np.asarray(reals(game.model).images[game.real_index])
            picture = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
            data = png_bytes(picture, {})
        else:
            data = await studio.batcher.image(game.model, studio.loaded(game.model), game.seed)
            data = _strip_text(data)  # the game shows pixels only: no metadata that says which is which
        return Response(data, media_type="image/png", headers={"Cache-Control": "no-store"})

    @app.post("/api/game/rounds/{round_id}/answer")
    async def answer(round_id: str, request: Request):
        body = await _json(request)
        picked = body.get("picked")
        if picked not in ("left", "right"):
            raise StudioError(422, "side")
        seconds = body.get("seconds", 0.0)
        seconds = float(seconds) if isinstance(seconds, (int, float)) and 0 <= seconds < 86400 else 0.0
        game = _round(studio, round_id)
        visible(studio, request, game.model)
        with studio.sessions.begin() as s:
            if s.scalar(select(Answer).where(Answer.round_id == round_id)) is not None:
                raise StudioError(409, "round_done")
            s.add(Answer(round_id=round_id, model=game.model, player=game.player, picked=picked,
                         correct=picked == game.real_side, seconds=seconds))
        return {"correct": picked == game.real_side, "real": game.real_side, "stats": _stats(studio, game.model)}

    @app.get("/api/game/{name}/stats")
    def stats(name: str, request: Request):
        visible(studio, request, name)
        return _stats(studio, name)

    @app.get("/api/game/{name}/answers.csv")
    def answers_csv(name: str, request: Request):
        if not is_owner(request):
            raise StudioError(403, "owner_only")
        studio.folder.model(name)
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["round", "model", "player", "picked", "real", "correct", "seconds", "generated_seed",
                         "real_index", "answered_at"])
        with studio.sessions() as s:
            rows = s.execute(select(Answer, Round).join(Round, Round.id == Answer.round_id)
                             .where(Answer.model == name).order_by(Answer.id))
            for a, r in rows:
                writer.writerow([r.id, name, a.player, a.picked, r.real_side, int(a.correct), f"{a.seconds:.2f}",
                                 r.seed, r.real_index, a.created.isoformat()])
        return Response(buffer.getvalue(), media_type="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{name}-which-is-real.csv"'})


def _round(studio: Studio, round_id: str) -> Round:
    with studio.sessions() as s:
        game = s.get(Round, round_id) if isinstance(round_id, str) and round_id.isalnum() else None
    if game is None:
        raise StudioError(404, "not_found", what="round", name=round_id)
    return game


def _stats(studio: Studio, name: str) -> dict:
    """The fooling rate (answers that took the generated image for the real one) with its 95 % Wilson
    interval: HYPE's human measure (Zhou et al. 2019), here on pairs."""
    with studio.sessions() as s:
        total = s.scalar(select(func.count()).select_from(Answer).where(Answer.model == name)) or 0
        fooled = s.scalar(select(func.count()).select_from(Answer).where(Answer.model == name, Answer.correct.is_(False))) or 0
    low, high = wilson(fooled, total)
    return {"model": name, "answers": total, "fooled": fooled, "fooling_rate": fooled / total if total else None,
            "interval95": [low, high]}


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float | None, float | None]:
    if n == 0:
        return None, None
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _strip_text(data: bytes) -> bytes:
    from PIL import Image

    picture = Image.open(io.BytesIO(data))
    picture.load()
    return png_bytes(picture, {})


__all__ = ["create_app", "wilson"]
