"""The studio's API: every endpoint with valid and invalid input, the token, private models, path tricks,
oversized and disguised uploads, the database's migrations, micro-batching and a real training job."""

from __future__ import annotations

import asyncio
import csv
import io
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ganforge.api import train_gan
from ganforge.data.prepare import prepare_dataset
from ganforge.export import export_generator
from ganforge.generator import Generator

fastapi = pytest.importorskip("fastapi")
from starlette.testclient import TestClient  # noqa: E402

from ganforge.studio import db  # noqa: E402
from ganforge.studio.app import create_app, wilson  # noqa: E402
from ganforge.studio.batcher import Batcher  # noqa: E402
from ganforge.studio.words import MESSAGES, WORDS  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = {"model.g_width": 8, "model.d_width": 8, "model.z_dim": 16, "batch_size": 16, "tick_kimg": 0.032,
        "grid_size": 10, "precision": "fp32", "ema_kimg": 0.1, "kimg": 0.1, "conditional": "no"}
SG2 = {"model.name": "stylegan2", "model.z_dim": 16, "model.w_dim": 16, "model.mapping_layers": 2,
       "model.channel_base": 128, "model.channel_max": 8, "batch_size": 8, "tick_kimg": 0.016, "grid_size": 4,
       "precision": "fp32", "ema_kimg": 0.1, "eval_minutes": 0, "kimg": 0.032, "augment": "", "r1_gamma": 0.1}
OWNER, FRIEND = ("127.0.0.1", 50000), ("192.168.1.20", 50000)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("studio")
    prepare_dataset("digits", root / "datasets" / "digits", resolution=16, workers=1, progress=False)
    run = train_gan(root / "datasets" / "digits", preset="dcgan-small", progress=False,
                    overrides={**TINY, "runs_dir": str(root / "runs")})
    export_generator(run.run_dir)
    return root


@pytest.fixture(scope="module")
def app(folder):
    return create_app(folder, run_jobs=False)


@pytest.fixture(scope="module")
def model(folder) -> str:
    return sorted(p.name for p in (folder / "runs").iterdir() if p.is_dir())[0]


@pytest.fixture
def owner(app):
    return TestClient(app, client=OWNER)


@pytest.fixture
def friend(app):
    return TestClient(app, client=FRIEND)


def share(owner, model, **settings):
    assert owner.post(f"/api/models/{model}/settings", json=settings).status_code == 200


# --- models and images ---------------------------------------------------------------------------------


def test_models_are_private_until_shared(owner, friend, model):
    share(owner, model, shareable=False, show_real=False)
    mine = owner.get("/api/models").json()
    assert mine["owner"] and [m["name"] for m in mine["models"]] == [model]
    assert friend.get("/api/models").json() == {"models": [], "owner": False}
    refused = friend.get(f"/api/models/{model}/image.png?seed=1")
    assert refused.status_code == 404 and "no model" in refused.json()["error"]  # a private name does not leak
    assert friend.post(f"/api/models/{model}/settings", json={"shareable": True}).status_code == 403
    share(owner, model, shareable=True)
    assert [m["name"] for m in friend.get("/api/models").json()["models"]] == [model]
    assert friend.get(f"/api/models/{model}/image.png?seed=1").status_code == 200
    share(owner, model, shareable=False)


def test_an_image_is_its_seed_marked_and_signed(owner, model, folder):
    from ganforge.release.verify import verify_image

    got = owner.get(f"/api/models/{model}/image.png?seed=42&truncation=0.8")
    assert got.status_code == 200 and got.headers["content-type"] == "image/png"
    again = owner.get(f"/api/models/{model}/image.png?seed=42&truncation=0.8")
    pixels = lambda response: np.asarray(Image.open(io.BytesIO(response.content)))  # noqa: E731
    assert np.array_equal(pixels(got), pixels(again))  # a permalink gives the same image (its manifest's time differs)
    gen = Generator.from_pretrained(folder / "runs" / model / "generator", device="cpu")
    expected = gen.sample([42], truncation=0.8)[0]
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(got.content))), np.asarray(expected))
    saved = folder / "dream.png"
    saved.write_bytes(got.content)
    verdict = verify_image(saved)
    assert verdict.marked and verdict.seed == 42 and verdict.signature == "valid"
    download = owner.get(f"/api/models/{model}/image.png?seed=42&download=true")
    assert download.headers["content-disposition"].startswith("attachment")
    seed = owner.get(f"/api/models/{model}/random").json()["seed"]
    assert 0 <= seed <= 2**32 - 2


@pytest.mark.parametrize("query,code", [("seed=-1", "seed"), ("seed=4294967295", "seed"), ("seed=1&truncation=3", "truncation"),
                                        ("seed=abc", "bad_request"), ("", "bad_request")])
def test_bounded_parameters_get_a_sentence(owner, model, query, code):
    got = owner.get(f"/api/models/{model}/image.png?{query}")
    assert 400 <= got.status_code < 500 and got.json()["code"] == code and "Traceback" not in got.text


@pytest.mark.parametrize("path", ["/api/models/..%2F..%2Fetc%2Fpasswd/image.png?seed=1", "/api/models/%2Fetc/image.png?seed=1",
                                  "/api/models/.hidden/image.png?seed=1", "/api/runs/..", "/api/datasets/..%2Fruns",
                                  "/static/..%2F..%2F__init__.py", "/static/.secret", "/api/images/999999.png"])
def test_no_path_outside_the_studio_can_be_named(owner, path):
    got = owner.get(path)
    assert got.status_code == 404 and "error" in got.json()


def test_messages_follow_the_language(owner, model):
    spanish = owner.get(f"/api/models/{model}/image.png?seed=-1", headers={"Accept-Language": "es-MX,es;q=0.9"})
    assert spanish.json()["error"].startswith("La semilla")
    assert owner.get("/api/words?lang=es").json()["words"]["game"] == "¿Cuál es real?"
    assert owner.get("/api/words", headers={"Accept-Language": "fr, es;q=0.5"}).json()["lang"] == "es"
    assert WORDS["en"].keys() == WORDS["es"].keys() and MESSAGES["en"].keys() == MESSAGES["es"].keys()


def test_security_headers_on_every_answer(owner, model):
    for path in ("/", "/dream/x", "/static/studio.js", "/api/models", f"/api/models/{model}/image.png?seed=-1"):
        headers = owner.get(path).headers
        assert "default-src 'self'" in headers["content-security-policy"] and headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"


# --- the token and rate limits -----------------------------------------------------------------------------


def test_another_address_needs_the_token(folder):
    app = create_app(folder, token="sesame", run_jobs=False)
    stranger = TestClient(app, client=FRIEND)
    assert stranger.get("/api/models").status_code == 401
    assert stranger.get("/api/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert stranger.get("/api/models", headers={"Authorization": "Bearer sesame"}).status_code == 200
    page = stranger.get("/?token=sesame", follow_redirects=False)  # the printed address: kept in a cookie
    assert page.status_code == 303 and "token" not in page.headers["location"]
    assert stranger.get("/api/models").status_code == 200  # the cookie carries it now


def test_rate_limits_apply_to_others_not_the_owner(folder, model):
    app = create_app(folder, rate=5, run_jobs=False)
    others = TestClient(app, client=("10.0.0.9", 1))
    codes = [others.get("/api/words").status_code for _ in range(30)]
    assert 429 in codes and codes[0] == 200
    assert "wait a moment" in others.get("/api/words").json()["error"]
    mine = TestClient(app, client=OWNER)
    assert all(mine.get("/api/words").status_code == 200 for _ in range(30))


# --- Which is real? ------------------------------------------------------------------------------------------


def test_three_rounds_of_which_is_real_and_the_fooling_rate(owner, friend, model):
    share(owner, model, shareable=True, show_real=False)
    assert friend.post(f"/api/game/{model}/round").json()["code"] == "no_real"  # the owner's consent first
    share(owner, model, show_real=True)
    before = friend.get(f"/api/game/{model}/stats").json()["answers"]
    results = []
    for pick in ("left", "right", "left"):
        game = friend.post(f"/api/game/{model}/round").json()
        left, right = friend.get(game["left"]), friend.get(game["right"])
        assert left.status_code == right.status_code == 200
        assert b"ganforge:provenance" not in left.content + right.content  # no metadata gives it away
        answer = friend.post(f"/api/game/rounds/{game['round']}/answer", json={"picked": pick, "seconds": 1.5}).json()
        assert answer["correct"] == (pick == answer["real"])
        results.append(answer)
        again = friend.post(f"/api/game/rounds/{game['round']}/answer", json={"picked": pick})
        assert again.status_code == 409
    stats = results[-1]["stats"]
    fooled = sum(not r["correct"] for r in results)
    assert stats["answers"] == before + 3 and stats["fooled"] >= fooled
    low, high = stats["interval95"]
    assert low <= stats["fooling_rate"] <= high
    assert friend.get(f"/api/game/{model}/answers.csv").status_code == 403  # the owner's data
    rows = list(csv.DictReader(io.StringIO(owner.get(f"/api/game/{model}/answers.csv").text)))
    assert len(rows) == stats["answers"] and {r["picked"] for r in rows} <= {"left", "right"}
    assert friend.post("/api/game/rounds/nosuchround/answer", json={"picked": "left"}).status_code == 404
    assert friend.post(f"/api/game/rounds/{game['round']}/answer", json={"picked": "up"}).json()["code"] == "side"
    assert friend.post(f"/api/game/rounds/{game['round']}/answer", content=b"not json").status_code == 422
    share(owner, model, shareable=False, show_real=False)


def test_wilson_interval_matches_a_hand_computation():
    low, high = wilson(8, 20)  # p = 0.4, n = 20, z = 1.96: the textbook 0.2188 .. 0.6134
    assert low == pytest.approx(0.2188, abs=1e-4) and high == pytest.approx(0.6134, abs=1e-4)
    assert wilson(0, 0) == (None, None) and wilson(0, 10)[0] == 0.0


# --- breeding and lineage ------------------------------------------------------------------------------------


def test_breed_keep_and_the_lineage_reproduces_each_image(owner, model):
    first = owner.post(f"/api/models/{model}/breed", json={"parents": [{"seed": 1}, {"seed": 2}], "count": 4, "seed": 7}).json()
    assert len(first["children"]) == 4
    child = first["children"][0]
    picture = np.asarray(Image.open(io.BytesIO(owner.get(child["url"]).content)))
    again = np.asarray(Image.open(io.BytesIO(owner.get(child["url"]).content)))
    assert np.array_equal(picture, again)  # the recipe makes the same image again
    second = owner.post(f"/api/models/{model}/breed", json={"parents": [{"image": child["id"]}, {"seed": 3}], "count": 2}).json()
    tree = owner.get(f"/api/images/{second['children'][0]['id']}/lineage").json()["images"]
    ids = {entry["id"] for entry in tree}
    assert child["id"] in ids and len(tree) >= 5  # the grandchild, its parents, and the seeds before them
    assert owner.post(f"/api/images/{child['id']}/keep").json()["kept"]
    for bad in ({"parents": [{"seed": 1}]}, {"parents": [{"seed": 1}, {"seed": 2}], "count": 65},
                {"parents": [{"seed": 1}, {"path": "/etc/passwd"}]}, {"parents": [{"seed": 1}, {"seed": 2}], "mutation": 5},
                {"parents": [{"image": 10**9}, {"seed": 2}]}):
        got = owner.post(f"/api/models/{model}/breed", json=bad)
        assert got.status_code in (404, 422) and "error" in got.json()


@pytest.fixture(scope="module")
def styled(digits_attr, tmp_path_factory):
    """A second studio holding a tiny StyleGAN2 trained on digits with attributes (ink, parity): a client
    for its owner and the model's name."""
    root = tmp_path_factory.mktemp("studio-styled")
    run = train_gan(digits_attr, progress=False, overrides={**SG2, "runs_dir": str(root / "runs")}).run_dir
    export_generator(run)
    return TestClient(create_app(root, run_jobs=False), client=OWNER), run.name, run / "generator"


def pixels_of(response) -> np.ndarray:
    assert response.status_code == 200 and response.headers["content-type"] == "image/png", response.text
    return np.asarray(Image.open(io.BytesIO(response.content)))


def test_controls_say_what_each_model_can_be_steered_with(owner, model, styled):
    plain = owner.get(f"/api/models/{model}/controls").json()
    assert plain["styles"] is False and plain["groups"] == {} and plain["attributes"] == []
    assert plain["modes"] == ["blend", "crossover"]
    client, name, _ = styled
    style = client.get(f"/api/models/{name}/controls").json()
    assert style["styles"] is True and "genes" in style["modes"] and style["groups"]["coarse"] == [0, 1, 2, 3]
    assert [(a["name"], a["kind"]) for a in style["attributes"]] == [("ink", "continuous"), ("parity", "categorical")]
    assert style["attributes"][1]["values"] == ["even", "odd"]


def test_style_mixing_takes_the_rows_styles_on_the_chosen_layers(owner, model, styled):
    from ganforge import steer

    client, name, folder = styled
    gen = Generator.from_pretrained(folder, device="cpu")
    for layers in ("coarse", "fine"):
        served = pixels_of(client.get(f"/api/models/{name}/mix.png?row=3&col=8&layers={layers}"))
        library = steer.style_mix(gen, [3], [8], layers=layers)
        assert np.array_equal(served, np.asarray(library.cells[0][0]))  # the classic grid's cell, exactly
    assert not np.array_equal(pixels_of(client.get(f"/api/models/{name}/mix.png?row=3&col=8")),
                              pixels_of(client.get(f"/api/models/{name}/mix.png?row=8&col=3")))
    for bad in ("row=3&col=8&layers=hair", "row=-1&col=8", "row=3&col=8&truncation=9", "row=3"):
        got = client.get(f"/api/models/{name}/mix.png?{bad}")
        assert got.status_code == 422 and "error" in got.json(), bad
    assert owner.get(f"/api/models/{model}/mix.png?row=1&col=2").status_code == 422  # a DCGAN has no styles


def test_attribute_sliders_keep_the_seed_and_change_the_attribute(owner, model, styled):
    from ganforge.attributes import attribute_edit

    client, name, folder = styled
    gen = Generator.from_pretrained(folder, device="cpu")
    low = pixels_of(client.get(f"/api/models/{name}/attributes.png?seed=5&values=ink:2"))
    assert np.array_equal(low, np.asarray(attribute_edit(gen, 5, "ink", [2.0])[0]))
    both = pixels_of(client.get(f"/api/models/{name}/attributes.png?seed=5&values=ink:2,parity:odd"))
    assert np.array_equal(both, np.asarray(attribute_edit(gen, 5, "ink", [2.0], others={"parity": "odd"})[0]))
    high = pixels_of(client.get(f"/api/models/{name}/attributes.png?seed=5&values=ink:8"))
    assert not np.array_equal(low, high)
    for bad in ("ink:nan", "ink:1e9", "size:2", "parity:maybe", "", "ink:2,ink:3", "ink"):
        got = client.get(f"/api/models/{name}/attributes.png?seed=5&values={bad}")
        assert got.status_code == 422 and "error" in got.json(), bad
    assert owner.get(f"/api/models/{model}/attributes.png?seed=1&values=ink:2").status_code == 422


def test_breeding_with_genes_reproduces_each_child_and_keeps_its_kind(owner, model, styled):
    client, name, _ = styled
    brood = client.post(f"/api/models/{name}/breed", json={"parents": [{"seed": 1}, {"seed": 2}], "count": 3,
                                                          "mode": "genes", "seed": 4}).json()
    child = brood["children"][0]
    first = pixels_of(client.get(child["url"]))
    assert np.array_equal(first, pixels_of(client.get(child["url"])))
    again = client.post(f"/api/models/{name}/breed", json={"parents": [{"image": child["id"]}, {"seed": 3}],
                                                          "count": 2, "mode": "genes"}).json()
    tree = client.get(f"/api/images/{again['children'][0]['id']}/lineage").json()["images"]
    assert {child["id"], *brood["parents"]} <= {m["id"] for m in tree}
    mixed = client.post(f"/api/models/{name}/breed", json={"parents": [{"image": child["id"]}, {"seed": 3}], "mode": "blend"})
    assert mixed.status_code == 422 and "genes" in mixed.json()["error"]
    got = owner.post(f"/api/models/{model}/breed", json={"parents": [{"seed": 1}, {"seed": 2}], "mode": "genes"})
    assert got.status_code == 422 and "StyleGAN" in got.json()["error"]


# --- Make and Watch ----------------------------------------------------------------------------------------------


def test_inspect_report_and_run_state(owner, friend, model):
    report = owner.get("/api/datasets/digits").json()
    assert report["count"] == 1797 and report["resolution"] == 16
    assert owner.get(report["contact_sheet"]).headers["content-type"] == "image/png"
    state = owner.get(f"/api/runs/{model}").json()
    assert state["status"] == "exported" and state["images_seen"] > 0 and state["losses"]
    assert owner.get(f"/api/runs/{model}/grid.png").status_code == 200
    assert owner.get(f"/api/runs/{model}/config.yaml").status_code == 404  # pictures only
    assert friend.get(f"/api/runs/{model}").status_code == 403  # runs are the owner's


def test_uploads_are_checked_by_size_and_content(owner, model, monkeypatch):
    from ganforge.studio import security

    not_zip = owner.post("/api/datasets", files={"file": ("photos.zip", b"not a zip at all")})
    assert not_zip.status_code == 415 and not_zip.json()["code"] == "not_zip"
    assert owner.post("/api/datasets?resolution=48", files={"file": ("a.zip", b"x")}).status_code == 422
    # translation uploads: an image by its content, at most 20 MB and 40 megapixels
    assert owner.post(f"/api/models/{model}/translate", files={"file": ("a.png", b"\x89PNG")}).json()["code"] == "not_translator"
    with pytest.raises(security.StudioError) as disguised:
        security.read_upload_image(b"<script>alert(1)</script>")
    assert disguised.value.key == "not_image"
    big = io.BytesIO()
    Image.new("L", (8000, 6000)).save(big, "PNG")  # 48 MP, small as a file
    with pytest.raises(security.StudioError) as too_many:
        security.read_upload_image(big.getvalue())
    assert too_many.value.key == "too_many_pixels" and too_many.value.status == 413
    with pytest.raises(security.StudioError) as too_big:
        security.read_upload_image(b"\0" * (security.MAX_UPLOAD_MB * 1024 * 1024 + 1))
    assert too_big.value.key == "too_big"


def test_a_training_job_starts_is_watched_stops_and_resumes(folder, tmp_path):
    app = create_app(folder, run_jobs=False)
    me = TestClient(app, client=OWNER)
    jobs = app.state.studio.jobs
    assert me.post("/api/jobs", json={"kind": "train", "dataset": "nope", "kimg": 1}).status_code == 404
    assert me.post("/api/jobs", json={"kind": "train", "dataset": "digits", "kimg": -1}).status_code == 422
    assert TestClient(app, client=FRIEND).post("/api/jobs", json={"kind": "train", "dataset": "digits"}).status_code == 403
    assert {"dcgan-small", "stylegan2", "pix2pix"} <= set(me.get("/api/presets").json()["presets"])
    assert TestClient(app, client=FRIEND).get("/api/presets").status_code == 403
    assert me.post("/api/jobs", json={"kind": "train", "dataset": "digits", "preset": "best"}).status_code == 422
    job = me.post("/api/jobs", json={"kind": "train", "dataset": "digits", "kimg": 50, "preset": "dcgan-small"}).json()
    assert job["status"] in ("queued", "running")
    deadline = time.time() + 120
    while time.time() < deadline:  # until the run has written its first checkpoint
        jobs.tick()
        state = jobs.get(job["id"])
        if state.run and list((folder / "runs" / state.run / "checkpoints").glob("*.pt")):
            break
        time.sleep(0.5)
    assert state.status == "running" and state.run
    stopped = me.post(f"/api/jobs/{job['id']}/stop").json()
    assert stopped["status"] in ("stopping", "stopped")
    while time.time() < deadline and jobs.get(job["id"]).status != "stopped":
        jobs.tick()
        time.sleep(0.5)
    assert jobs.get(job["id"]).status == "stopped"
    resumed = me.post(f"/api/jobs/{job['id']}/resume").json()
    assert resumed["kind"] == "train" and resumed["args"] == {"resume": state.run}
    me.post(f"/api/jobs/{resumed['id']}/stop")
    while time.time() < deadline and jobs.get(resumed["id"]).status not in ("stopped", "done", "failed"):
        jobs.tick()
        time.sleep(0.5)
    assert jobs.get(resumed["id"]).status == "stopped"
    listed = me.get("/api/jobs").json()["jobs"]
    assert {j["id"] for j in listed} >= {job["id"], resumed["id"]}


# --- the database, the batcher -----------------------------------------------------------------------------------


def test_the_schema_is_versioned_and_a_newer_one_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'studio.db'}"
    sessions = db.open_database(url)
    engine = sessions.kw["bind"]
    assert db.schema_version(engine) == db.SCHEMA_VERSION
    assert db.migrate(engine) == db.SCHEMA_VERSION  # nothing left to apply
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE studio_meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(db.DatabaseError, match="newer"):
        db.open_database(url)
    with pytest.raises(db.DatabaseError, match="Cannot"):
        db.open_database("nosuchdialect://x")


def test_requests_that_arrive_together_are_made_in_one_batch(folder, model):
    gen = Generator.from_pretrained(folder / "runs" / model / "generator", device="cpu")
    batcher = Batcher(max_batch=64, wait_ms=20)

    async def together():
        return await asyncio.gather(*[batcher.image(model, gen, seed) for seed in range(32)])

    made = asyncio.run(together())
    assert batcher.batches <= 2 and batcher.images == 32
    expected = gen.sample([5])[0]
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(made[5]))), np.asarray(expected))
    batcher.close()


def test_studio_command_refuses_a_bad_port(capsys, tmp_path):
    from ganforge.cli import main

    assert main(["studio", str(tmp_path / "s"), "--port", "0"]) == 2
    assert "--port" in capsys.readouterr().err


def test_a_zip_becomes_a_dataset_with_every_file_accounted_for(folder):
    app = create_app(folder, run_jobs=False)
    me = TestClient(app, client=OWNER)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for k in range(24):
            picture = io.BytesIO()
            Image.fromarray(np.random.default_rng(k).integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(picture, "PNG")
            archive.writestr(f"textiles/{k:02d}.png", picture.getvalue())
        archive.writestr("textiles/broken.png", b"\x89PNG not really")
        archive.writestr("textiles/notes.txt", "hello")
    made = me.post("/api/datasets?resolution=16&name=mis textiles", files={"file": ("t.zip", buffer.getvalue())}).json()
    assert made["dataset"] == "mis-textiles"
    jobs = app.state.studio.jobs
    deadline = time.time() + 120
    while time.time() < deadline and jobs.get(made["job"]).status in ("queued", "running"):
        jobs.tick()
        time.sleep(0.3)
    assert jobs.get(made["job"]).status == "done", jobs.log_tail(made["job"])
    report = me.get("/api/datasets/mis-textiles").json()
    assert report["count"] == 24 and report["skipped_count"] >= 1
    assert any("broken.png" in (s["file"] or "") for s in report["skipped"])
    assert "mis-textiles" in me.get("/api/datasets").json()["datasets"]


def test_directions_are_found_once_and_steer_an_image(owner, friend, model):
    assert owner.get(f"/api/models/{model}/steer.png?seed=1&edits=0:1").status_code == 409  # none found yet
    assert friend.post(f"/api/models/{model}/directions").status_code == 403
    found = owner.post(f"/api/models/{model}/directions").json()
    assert found["found"] and found["count"] >= 1
    assert owner.get(f"/api/models/{model}/directions").json()["count"] == found["count"]
    plain = np.asarray(Image.open(io.BytesIO(owner.get(f"/api/models/{model}/steer.png?seed=1").content)))
    moved = np.asarray(Image.open(io.BytesIO(owner.get(f"/api/models/{model}/steer.png?seed=1&edits=0:3").content)))
    assert plain.shape == moved.shape and not np.array_equal(plain, moved)
    for bad in ("0:9", "x", "0:1:2"):
        assert owner.get(f"/api/models/{model}/steer.png?seed=1&edits={bad}").status_code == 422


def test_translate_an_upload_with_a_label_map_model(folder, owner, friend):
    photos = folder / "uploads" / "photos"
    photos.mkdir(parents=True, exist_ok=True)
    for i in range(12):
        image = np.full((16, 16, 3), np.random.default_rng(i).integers(0, 256, 3), np.uint8)
        image[4:12, 4:12] = np.random.default_rng(100 + i).integers(0, 256, 3)
        Image.fromarray(image).save(photos / f"{i}.png")
    pairs = folder / "datasets" / "painted"
    prepare_dataset(photos, pairs, resolution=16, derive="labels:3", progress=False, workers=1)
    run = train_gan(pairs, preset="pix2pix", progress=False, overrides={
        "model.width": 4, "model.d_width": 4, "batch_size": 4, "tick_kimg": 0.008, "kimg": 0.008,
        "runs_dir": str(folder / "runs")}).run_dir
    export_generator(run)
    name = run.name
    app = create_app(folder, run_jobs=False)
    me = TestClient(app, client=OWNER)
    listed = {m["name"]: m for m in me.get("/api/models").json()["models"]}
    assert listed[name]["task"] == "image-to-image" and len(listed[name]["input"]["colours"]) == 3  # the palette
    painted = io.BytesIO()
    canvas = np.zeros((40, 40, 3), np.uint8)
    canvas[:] = listed[name]["input"]["colours"][0]
    canvas[10:30, 10:30] = listed[name]["input"]["colours"][2]
    Image.fromarray(canvas).save(painted, "PNG")
    got = me.post(f"/api/models/{name}/translate", files={"file": ("canvas.png", painted.getvalue())})
    assert got.status_code == 200 and got.headers["content-type"] == "image/png"
    out = Image.open(io.BytesIO(got.content))
    assert out.size == (40, 40) and "ganforge:provenance" in out.text  # marked and signed like every image
    disguised = me.post(f"/api/models/{name}/translate", files={"file": ("photo.png", b"GIF89a not really")})
    assert disguised.status_code == 415 and disguised.json()["code"] == "not_image"
    assert me.get(f"/api/models/{name}/image.png?seed=1").json()["code"] == "not_generator"
    assert TestClient(app, client=FRIEND).post(f"/api/models/{name}/translate",
                                               files={"file": ("c.png", painted.getvalue())}).status_code == 404


def test_a_folder_of_files_is_uploaded_without_its_paths(folder):
    app = create_app(folder, run_jobs=False)
    me = TestClient(app, client=OWNER)
    files = []
    for k in range(20):
        picture = io.BytesIO()
        Image.fromarray(np.random.default_rng(k).integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(picture, "PNG")
        files.append(("file", (f"huipiles/{k:02d}.png", picture.getvalue())))
    files.append(("file", ("../../outside.png", b"not an image")))
    made = me.post("/api/datasets?resolution=16", files=files).json()
    assert made["dataset"] == "huipiles"
    stored = sorted(p.name for p in (folder / "uploads" / "huipiles").iterdir())
    assert len(stored) == 21 and not (folder.parent / "outside.png").exists() and stored[-1].endswith("outside.png")
    jobs = app.state.studio.jobs
    deadline = time.time() + 120
    while time.time() < deadline and jobs.get(made["job"]).status in ("queued", "running"):
        jobs.tick()
        time.sleep(0.3)
    report = me.get("/api/datasets/huipiles").json()
    assert report["count"] == 20 and report["skipped_count"] == 1  # the fake one, with its reason


def test_after_a_restart_a_job_whose_process_is_gone_is_resumed(folder, model):
    from sqlalchemy import select

    from ganforge.studio.jobs import Jobs

    app = create_app(folder, run_jobs=False)
    sessions = app.state.studio.sessions
    gone = __import__("subprocess").Popen(["true"])
    gone.wait()
    with sessions.begin() as s:
        s.add(db.Job(kind="train", status="running", args={"dataset": "digits", "kimg": 1}, run=model, pid=gone.pid))
    Jobs(app.state.studio.folder, sessions)  # what a new studio does on start
    with sessions() as s:
        latest = s.scalars(select(db.Job).order_by(db.Job.id.desc())).first()
        interrupted = s.scalars(select(db.Job).where(db.Job.pid == gone.pid)).first()
    assert interrupted.status == "stopped" and "studio stopped" in interrupted.message
    assert latest.status == "queued" and latest.args == {"resume": model} and latest.run == model
    with sessions.begin() as s:
        s.get(db.Job, latest.id).status = "stopped"  # leave no queued job behind for other tests
