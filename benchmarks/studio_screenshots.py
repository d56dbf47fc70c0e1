"""Screenshots of every studio page, over a real trained model, in headless Chromium: for the notes and
for looking at what a person sees.

    python benchmarks/studio_screenshots.py --run benchmarks/out/mark/runs/00000-data-64-dcgan \
        [--run OTHER_RUN ...] [--lang es]

Each RUN is copied into a fresh studio folder (its training dataset too, for the game). The first one is
shown on every page: home, dream, game, breed (after one brood), the family tree of a grandchild, make,
watch; each other one on its own page: breed (a generator: its sliders, attributes, style mixing) or
translate (an image-to-image model). The pictures go to benchmarks/out/studio/.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent / "src"))
OUT = ROOT / "out" / "studio"


def main() -> int:
    import uvicorn
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from ganforge.studio.app import create_app
    from ganforge.studio.db import ModelSetting

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, action="append")
    parser.add_argument("--lang", default="en")
    args = parser.parse_args()
    folder = OUT / "folder"
    shutil.rmtree(folder, ignore_errors=True)
    for run in args.run:
        shutil.copytree(run, folder / "runs" / run.name, ignore=shutil.ignore_patterns("checkpoints"))
        data = Path(__import__("yaml").safe_load((run / "config.yaml").read_text())["data"])
        if (data / "manifest.json").is_file() and not (folder / "datasets" / data.name).exists():
            shutil.copytree(data, folder / "datasets" / data.name)
    app = create_app(folder)
    name = args.run[0].name
    with app.state.studio.sessions.begin() as s:
        s.merge(ModelSetting(name=name, shareable=False, show_real=True))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,1000", f"--lang={args.lang}"):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"intl.accept_languages": args.lang})  # what the pages follow
    browser = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    url = f"http://127.0.0.1:{port}"

    def shot(path: str, file: str, then=None):
        browser.get(url + path)
        WebDriverWait(browser, 30).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
        if then:
            then()
        time.sleep(1.5)  # images finish loading
        target = OUT / f"{file}-{args.lang}.png"
        browser.save_screenshot(str(target))
        print(target)

    def answer():
        WebDriverWait(browser, 20).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#pair img")) == 2)
        time.sleep(1)
        browser.find_elements(By.CSS_SELECTOR, "#pair img")[0].click()
        WebDriverWait(browser, 20).until(lambda d: d.find_elements(By.ID, "next"))

    children = []

    def breed():
        parents = browser.find_elements(By.CSS_SELECTOR, "#parents img")
        parents[0].click()
        parents[5].click()
        browser.find_element(By.ID, "breed").click()
        WebDriverWait(browser, 30).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#children img")) == 8)
        first = browser.find_elements(By.CSS_SELECTOR, "#children img")
        children.extend(int(c.get_attribute("data-id")) for c in first[:2])
        browser.execute_script("window.scrollTo(0, document.body.scrollHeight)")

    def grandchild() -> int:
        """A child of two children of the brood: a family tree of three generations."""
        from starlette.testclient import TestClient

        client = TestClient(app, client=("127.0.0.1", 50000))
        made = client.post(f"/api/models/{name}/breed", json={"parents": [{"image": c} for c in children], "count": 1,
                                                             "seed": 3}).json()
        return made["children"][0]["id"]

    def paint():
        """Broad strokes in three of the model's colours (or in black on white), then translate them."""
        from selenium.webdriver.common.action_chains import ActionChains

        canvas = browser.find_element(By.ID, "canvas")
        swatches = browser.find_elements(By.CSS_SELECTOR, "#palette button")
        for k, (dx, dy) in enumerate(((-90, 40), (-40, -90), (30, 10))):
            if swatches:
                swatches[(2 * k + 1) % len(swatches)].click()
            ActionChains(browser).move_to_element_with_offset(canvas, dx, dy).click_and_hold() \
                .move_by_offset(120, 30).move_by_offset(-60, 50).release().perform()
        browser.find_element(By.ID, "run").click()
        WebDriverWait(browser, 60).until(lambda d: d.execute_script(
            "const i = document.getElementById('result'); return i.complete && i.naturalWidth > 0"))

    def inspect():
        browser.find_element(By.ID, "inspect").click()
        WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#report img"))

    try:
        shot("/", "home")
        shot(f"/dream/{name}?seed=42", "dream")
        shot(f"/game/{name}", "game", answer)
        shot(f"/breed/{name}", "breed", breed)
        shot(f"/lineage/{grandchild()}", "lineage")
        for run in args.run[1:]:
            kind = "translate" if (run / "generator" / "config.json").read_text().count('"image-to-image"') else "breed"
            shot(f"/{kind}/{run.name}", f"{kind}-{run.name}", paint if kind == "translate" else None)
        shot("/make", "make", inspect if (folder / "datasets").iterdir() else None)
        shot("/watch", "watch-all")
        shot(f"/watch/{name}", "watch")
    finally:
        browser.quit()
        server.should_exit = True
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
