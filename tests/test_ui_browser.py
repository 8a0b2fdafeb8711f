"""The editor page end to end in headless Chromium: a slider changes the picture, uploads show errors or get projected
(centre-cropped, or with the face aligned)."""
from __future__ import annotations

import io
import re
import shutil
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from ui_helpers import running_editor, write_true_edit_run

from contrafeat.editing.face_alignment import align_photo
from contrafeat.editing.face_detection import mtcnn_weights_status
from contrafeat.viz.images import save_png
from contrafeat.zoo import load_generator

torch.set_num_threads(1)
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="headless browser test needs chromium and chromedriver on PATH (Debian: apt-get install chromium chromium-driver)",
)
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1200,760",
)
PROJECT_STEPS = 12
PICTURE_BYTES = (
    "const p = document.getElementById('picture'); const c = document.createElement('canvas');"
    "c.width = p.naturalWidth; c.height = p.naturalHeight; c.getContext('2d').drawImage(p, 0, 0); return c.toDataURL();"
)
"""Script returning the displayed picture's pixels as a PNG data URL."""


def start_chromium(profile: Path):
    """Headless Chromium through Debian's chromedriver, with a fresh profile and no background network traffic."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))


@pytest.fixture(scope="module")
def editor(tmp_path_factory: pytest.TempPathFactory):
    run = write_true_edit_run(tmp_path_factory.mktemp("run"))
    with running_editor(run, "--project-steps", str(PROJECT_STEPS)) as server:
        yield server


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    driver = start_chromium(tmp_path_factory.mktemp("profile"))
    yield driver
    driver.quit()


@pytest.fixture()
def page(browser, editor):
    """The editor freshly loaded, with its first picture (seed 0) on screen."""
    browser.get(editor.url)
    wait_for_picture(browser, lambda query: "seed=0" in query)
    return browser


def wait_for_picture(browser, accept, timeout: float = 20) -> str:
    """Wait until the picture shows a state whose query `accept`s; return that query."""
    picture = browser.find_element(By.ID, "picture")
    return WebDriverWait(browser, timeout).until(lambda _: accept(picture.get_attribute("data-query") or "") and picture.get_attribute("data-query"))


def error_text(browser) -> str:
    """The message of the page's error banner once it is shown."""
    banner = browser.find_element(By.ID, "error")
    WebDriverWait(browser, 10).until(lambda _: banner.is_displayed())
    return banner.text


def test_moving_a_slider_changes_the_picture(page) -> None:
    before_query, before_pixels = page.find_element(By.ID, "picture").get_attribute("data-query"), page.execute_script(PICTURE_BYTES)
    slider = page.find_element(By.ID, "slider-3")
    ActionChains(page).move_to_element_with_offset(slider, slider.size["width"] // 3, 0).click().perform()
    value = float(slider.get_attribute("value"))
    assert 1.5 <= value <= 2.5
    query = wait_for_picture(page, lambda query: query != before_query)
    assert f"s=0%2C0%2C0%2C{value:g}%2C0%2C0" in query
    assert page.execute_script(PICTURE_BYTES) != before_pixels
    assert page.find_element(By.ID, "value-3").text == f"+{value:.2f}"
    assert "seed=0" in page.find_element(By.ID, "download-png").get_attribute("href")
    page.find_element(By.ID, "reset").click()
    wait_for_picture(page, lambda query: query == before_query)
    assert page.execute_script(PICTURE_BYTES) == before_pixels


def test_non_image_upload_shows_the_error(page, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("these are notes, not a picture\n")
    page.find_element(By.ID, "upload").send_keys(str(notes))
    assert error_text(page) == "not an image: the file was sent as text/plain; upload a PNG, JPEG, WebP or BMP image"
    assert not page.find_element(By.ID, "progress-box").is_displayed()


def test_damaged_png_upload_shows_the_decoder_message(page, tmp_path: Path) -> None:
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"\x89PNG\r\n\x1a\n but nothing else")
    page.find_element(By.ID, "upload").send_keys(str(fake))
    assert "expected a PNG, JPEG, WEBP or BMP image" in error_text(page)


def test_png_upload_shows_progress_then_the_projection(page, tmp_path: Path) -> None:
    generator = load_generator("shapes3d")
    z = torch.randn(1, generator.z_dim, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        target = save_png(generator(z)[0], tmp_path / "target.png")
    seed_pixels = page.execute_script(PICTURE_BYTES)
    page.execute_script(
        "window.progressLog = []; new MutationObserver(() => window.progressLog.push(document.getElementById('progress-text').textContent))"
        ".observe(document.getElementById('progress-text'), {childList: true, characterData: true, subtree: true});"
    )
    page.find_element(By.ID, "upload").send_keys(str(target))
    query = wait_for_picture(page, lambda query: "upload=" in query, timeout=30)
    log = page.execute_script("return window.progressLog;")
    assert any(re.fullmatch(rf"projecting: step \d+ of {PROJECT_STEPS}(, loss [\d.]+)?", entry) for entry in log), log
    assert re.fullmatch(rf"editing the uploaded image: projected in {PROJECT_STEPS} steps, loss [\d.]+", log[-1]), log
    assert float(page.find_element(By.ID, "progress").get_attribute("value")) == 1.0
    assert page.execute_script(PICTURE_BYTES) != seed_pixels
    assert re.search(r"upload=[0-9a-f]{16}", query)
    assert not page.find_element(By.ID, "error").is_displayed()


@pytest.mark.skipif(not mtcnn_weights_status()[0], reason="face alignment needs the MTCNN weights")
def test_upload_with_align_projects_the_aligned_face(page, tmp_path: Path) -> None:
    skimage_data = pytest.importorskip("skimage.data", reason="the test photo comes from scikit-image")
    astronaut = Image.fromarray(skimage_data.astronaut())
    astronaut.save(tmp_path / "astronaut.png")
    page.find_element(By.ID, "align").click()
    page.find_element(By.ID, "upload").send_keys(str(tmp_path / "astronaut.png"))
    wait_for_picture(page, lambda query: "upload=" in query, timeout=60)
    assert page.find_element(By.ID, "upload-note").text == "face aligned"
    source = page.find_element(By.ID, "target").get_attribute("src")
    assert re.search(r"/api/jobs/[0-9a-f]{16}/target\.png$", source), source
    assert page.execute_script("return document.getElementById('target').naturalWidth;") == 64
    with urllib.request.urlopen(source, timeout=30) as response:
        shown = np.asarray(Image.open(io.BytesIO(response.read())).convert("RGB"))
    assert np.array_equal(shown, np.asarray(align_photo(astronaut, 64).image))
    assert not page.find_element(By.ID, "error").is_displayed()
