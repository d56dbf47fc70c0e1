"""The studio's pages in a real headless Chromium (Debian's chromium and chromium-driver, which .ci/run
installs): each page loads and shows what it should, three rounds of Which is real, one brood, and a
short training job started and stopped from the page. Screenshots go to the test's folder."""

from __future__ import annotations

import shutil
import socket
import threading
import time

import pytest

pytest.importorskip("fastapi")
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM, DRIVER = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
pytestmark = [pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="needs Debian's chromium and chromium-driver "
                                 "(apt-get install chromium chromium-driver; .ci/run installs them)"),
              pytest.mark.usefixtures("one_thread")]
TINY = {"model.g_width": 8, "model.d_width": 8, "model.z_dim": 16, "batch_size": 16, "tick_kimg": 0.032,
        "grid_size": 10, "precision": "fp32", "ema_kimg": 0.1, "kimg": 0.1, "conditional": "no"}
SG2 = {"model.name": "stylegan2", "model.z_dim": 16, "model.w_dim": 16, "model.mapping_layers": 2,
       "model.channel_base": 128, "model.channel_max": 8, "batch_size": 8, "tick_kimg": 0.016, "grid_size": 4,
       "precision": "fp32", "ema_kimg": 0.1, "eval_minutes": 0, "kimg": 0.032, "augment": "", "r1_gamma": 0.1}


@pytest.fixture(scope="module")
def server(tmp_path_factory, digits_attr):
    import uvicorn

    from ganforge.api import train_gan
    from ganforge.data.prepare import prepare_dataset
    from ganforge.export import export_generator
    from ganforge.studio.app import create_app

    root = tmp_path_factory.mktemp("studio-browser")
    prepare_dataset("digits", root / "datasets" / "digits", resolution=16, workers=1, progress=False)
    run = train_gan(root / "datasets" / "digits", preset="dcgan-small", progress=False,
                    overrides={**TINY, "runs_dir": str(root / "runs")})
    export_generator(run.run_dir)
    import numpy as np
    from PIL import Image

    photos = root / "uploads" / "photos"
    photos.mkdir(parents=True)
    for i in range(12):
        image = np.full((16, 16, 3), np.random.default_rng(i).integers(0, 256, 3), np.uint8)
        image[4:12, 4:12] = np.random.default_rng(100 + i).integers(0, 256, 3)
        Image.fromarray(image).save(photos / f"{i}.png")
    prepare_dataset(photos, root / "datasets" / "painted", resolution=16, derive="labels:3", progress=False, workers=1)
    painter = train_gan(root / "datasets" / "painted", preset="pix2pix", progress=False, overrides={
        "model.width": 4, "model.d_width": 4, "batch_size": 4, "tick_kimg": 0.008, "kimg": 0.008,
        "runs_dir": str(root / "runs")}).run_dir
    export_generator(painter)
    styled = train_gan(digits_attr, progress=False, overrides={**SG2, "runs_dir": str(root / "runs")}).run_dir
    export_generator(styled)
    app = create_app(root)
    studio = app.state.studio
    studio.jobs.poll = 0.3
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    web = uvicorn.Server(config)
    thread = threading.Thread(target=web.run, daemon=True)
    thread.start()
    while not web.started:
        time.sleep(0.05)
    studio.painter, studio.styled = painter.name, styled.name
    yield f"http://127.0.0.1:{port}", run.run_dir.name, studio, root
    web.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,900", "--lang=en-US"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def ready(browser, url: str):
    browser.get(url)
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
    assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "yes", \
        browser.find_element(By.ID, "main").text


def loaded(browser, element) -> bool:
    return browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", element)


def test_every_page_loads_in_both_languages(server, browser, tmp_path):
    url, model, studio, _ = server
    for path in ("/", f"/dream/{model}", "/make", "/watch", f"/watch/{model}", f"/breed/{model}"):
        ready(browser, url + path)
        browser.save_screenshot(str(tmp_path / f"{path.strip('/').replace('/', '-') or 'home'}.png"))
    ready(browser, url + "/")
    assert browser.find_element(By.CSS_SELECTOR, f"[data-model='{model}'] h3").text == model
    browser.find_element(By.ID, "language").click()
    WebDriverWait(browser, 10).until(lambda d: d.find_element(By.TAG_NAME, "h1").text == "Tus modelos")
    browser.find_element(By.ID, "language").click()
    WebDriverWait(browser, 10).until(lambda d: d.find_element(By.TAG_NAME, "h1").text == "Your models")


def test_watch_compares_runs_by_kid_once_they_have_it(server, browser, tmp_path):
    import json

    url, model, studio, root = server
    ready(browser, url + "/watch")
    assert browser.find_element(By.ID, "compare").get_attribute("data-measure") == "loss_G"  # nothing measured yet
    written = []
    for run, values in ((model, (0.30, 0.21)), (studio.styled, (0.35, 0.12))):
        path = root / "runs" / run / "metrics.jsonl"
        path.write_text("".join(json.dumps({"images_seen": 1000 * (k + 1), "metrics": {"kid20": v, "kid20_std": 0.01}})
                                + "\n" for k, v in enumerate(values)))
        written.append(path)
    try:
        ready(browser, url + "/watch")
        assert browser.find_element(By.ID, "compare").get_attribute("data-measure") == "kid20"
        assert "kid20 (lower is better)" in browser.find_element(By.ID, "compare-what").text
        browser.save_screenshot(str(tmp_path / "watch-compare.png"))
    finally:
        for path in written:
            path.unlink()


def test_this_image_does_not_exist_gives_a_permalink(server, browser):
    url, model, *_ = server
    ready(browser, f"{url}/dream/{model}")
    image = browser.find_element(By.ID, "dream")
    WebDriverWait(browser, 20).until(lambda d: loaded(d, image))
    seed = browser.current_url.split("seed=")[1]
    assert browser.find_element(By.ID, "seed").text.endswith(seed)
    ready(browser, browser.find_element(By.ID, "permalink").get_attribute("href"))
    assert browser.current_url.endswith(f"seed={seed}")  # the same image again
    browser.find_element(By.ID, "another").click()
    WebDriverWait(browser, 20).until(lambda d: "seed=" in d.current_url and not d.current_url.endswith(f"seed={seed}"))


def test_three_rounds_of_the_game(server, browser, tmp_path):
    url, model, studio, _ = server
    from ganforge.studio.db import ModelSetting

    with studio.sessions.begin() as s:
        s.merge(ModelSetting(name=model, shareable=False, show_real=True))
    studio.forget(model)  # changed behind the app's back: as the settings route does
    ready(browser, f"{url}/game/{model}")
    for k in range(3):
        WebDriverWait(browser, 20).until(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, "#pair img")) == 2
            and all(loaded(d, i) for i in d.find_elements(By.CSS_SELECTOR, "#pair img")))
        images = browser.find_elements(By.CSS_SELECTOR, "#pair img")
        images[k % 2].click()
        WebDriverWait(browser, 20).until(EC.presence_of_element_located((By.ID, "next")))
        assert len(browser.find_elements(By.CSS_SELECTOR, "#pair img.real")) == 1  # the page says which was real
        assert browser.find_element(By.ID, "message").text in ("Right: that one was real.", "Fooled: that one was generated.")
        stats = browser.find_element(By.ID, "stats").text
        assert f"{k + 1} answers" in stats and "Fooling rate" in stats
        if k == 2:
            browser.save_screenshot(str(tmp_path / "game.png"))
        browser.find_element(By.ID, "next").click()
        WebDriverWait(browser, 20).until(EC.staleness_of(images[0]))


def test_breed_once(server, browser):
    url, model, *_ = server
    ready(browser, f"{url}/breed/{model}")
    parents = browser.find_elements(By.CSS_SELECTOR, "#parents img")
    assert len(parents) == 12
    parents[0].click()
    parents[3].click()
    browser.find_element(By.ID, "breed").click()
    children = WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#children img"))
    assert len(children) == 8
    WebDriverWait(browser, 20).until(lambda d: all(loaded(d, c) for c in children))


def test_steer_a_stylegan_by_attributes_and_style_mixing_then_draw_the_family_tree(server, browser, tmp_path):
    url, _, studio, _ = server
    ready(browser, f"{url}/breed/{studio.styled}")
    attribute = browser.find_element(By.ID, "attribute-image")
    WebDriverWait(browser, 20).until(lambda d: loaded(d, attribute))
    before = attribute.get_attribute("src")
    ink = browser.find_element(By.CSS_SELECTOR, "[data-attribute='ink']")
    browser.execute_script("arguments[0].value = arguments[0].max; arguments[0].dispatchEvent(new Event('change'))", ink)
    WebDriverWait(browser, 20).until(lambda d: attribute.get_attribute("src") != before and loaded(d, attribute))
    assert [o.text for o in browser.find_elements(By.CSS_SELECTOR, "[data-attribute='parity'] option")] == ["even", "odd"]
    assert "Pick two parents" in browser.find_element(By.ID, "mixed").text
    parents = browser.find_elements(By.CSS_SELECTOR, "#parents img")
    parents[1].click()
    parents[4].click()
    mixed = WebDriverWait(browser, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#mixed img"))
    assert len(mixed) == 3 and "layers=coarse" in mixed[2].get_attribute("src")
    WebDriverWait(browser, 20).until(lambda d: all(loaded(d, m) for m in mixed))
    browser.find_element(By.CSS_SELECTOR, "#mode option[value='genes']").click()
    browser.find_element(By.ID, "breed").click()
    links = WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#children a.lineage"))
    browser.save_screenshot(str(tmp_path / "breed-stylegan.png"))
    links[0].click()
    WebDriverWait(browser, 20).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "yes")
    tree = WebDriverWait(browser, 20).until(lambda d: d.find_element(By.ID, "tree"))
    WebDriverWait(browser, 20).until(lambda d: tree.get_attribute("data-links") == "2")  # one line per parent
    generations = browser.find_elements(By.CSS_SELECTOR, "#tree .generation")
    assert [len(g.find_elements(By.CSS_SELECTOR, ".node")) for g in generations] == [2, 1]  # parents over the child
    assert "genes" in generations[1].text
    browser.save_screenshot(str(tmp_path / "lineage.png"))


def test_start_and_stop_a_training_job_from_the_page(server, browser):
    url, model, studio, root = server
    ready(browser, f"{url}/make")
    browser.find_element(By.ID, "kimg").clear()
    browser.find_element(By.ID, "kimg").send_keys("50")
    browser.find_element(By.CSS_SELECTOR, "#preset option[value='dcgan-small']").click()
    browser.find_element(By.ID, "train").click()
    row = WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#jobs tr[data-status='running']"))
    WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#jobs tr[data-status='running'] a"))
    deadline = time.time() + 90
    job = max(studio.jobs.list(), key=lambda j: j.id)
    assert job.args["preset"] == "dcgan-small"  # the menu's choice reached the job
    while time.time() < deadline and not (job.run and list((root / "runs" / job.run / "checkpoints").glob("*.pt"))):
        time.sleep(0.5)
        job = studio.jobs.get(job.id)
    browser.find_element(By.CSS_SELECTOR, "#jobs tr[data-status='running'] button").click()
    WebDriverWait(browser, 90).until(lambda d: d.find_elements(By.CSS_SELECTOR, f"#jobs tr[data-job='{job.id}'][data-status='stopped']"))
    assert row


def test_paint_a_label_map_and_translate_it(server, browser, tmp_path):
    url, _, studio, _ = server
    ready(browser, f"{url}/translate/{studio.painter}")
    swatches = browser.find_elements(By.CSS_SELECTOR, "#palette button")
    assert len(swatches) == 3  # the model's label colours
    swatches[2].click()
    canvas = browser.find_element(By.ID, "canvas")
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(browser).move_to_element_with_offset(canvas, -50, -50).click_and_hold().move_by_offset(100, 80) \
        .release().perform()
    browser.find_element(By.ID, "run").click()
    result = browser.find_element(By.ID, "result")
    WebDriverWait(browser, 30).until(lambda d: loaded(d, result))
    browser.save_screenshot(str(tmp_path / "translate.png"))


def test_pages_follow_the_browsers_language(server):
    from selenium.webdriver.chrome.service import Service

    url, model, *_ = server
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"intl.accept_languages": "es-MX,es"})
    spanish = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        ready(spanish, url + "/")
        assert spanish.find_element(By.TAG_NAME, "h1").text == "Tus modelos"
        assert spanish.find_element(By.CSS_SELECTOR, "header a[href='/make']").text == "Crear"
        ready(spanish, f"{url}/dream/{model}?seed=-1")  # the server's message, in Spanish, on the page
        WebDriverWait(spanish, 20).until(lambda d: d.find_elements(By.ID, "message"))
        assert spanish.find_element(By.ID, "message").text.startswith("La semilla debe ser")
    finally:
        spanish.quit()
