"""The page in headless Chromium with a fake camera (a real face photo) and a fake microphone (espeak-ng).

Checks that live predictions and a transcript appear, that an uncertain prediction lands in the
review queue and is resolved by a named reviewer (becoming a training sample), and that bad input
gives a visible error while the page keeps working. Screenshots go to test-artifacts/.
"""
from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from skimage import data

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
WAIT_S = 90  # generous: first use loads the emotion model and Whisper on a 2-core CPU


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fake_media(folder: Path, spoken) -> tuple[Path, Path]:
    """A 640x480 y4m of the astronaut's face and a 48 kHz WAV of a spoken question (with pauses)."""
    import cv2

    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is needed to make the fake camera file")
    png = folder / "face.png"
    cv2.imwrite(str(png), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    y4m = folder / "face.y4m"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-loop", "1", "-i", str(png), "-t", "1", "-r", "10", "-vf",
                    "scale=640:480:force_original_aspect_ratio=decrease,pad=640:480:(ow-iw)/2:(oh-ih)/2",
                    "-pix_fmt", "yuv420p", str(y4m)], check=True)
    speech = spoken("Hello, can you help me with my homework?", sample_rate=48000)
    wav = folder / "speech.wav"
    subprocess.run(["sox", str(speech), str(wav), "pad", "0.5", "2"], check=True)
    return y4m, wav


@pytest.fixture
def browser(tmp_path, spoken):
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("Debian's chromium and chromium-driver are needed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    y4m, wav = fake_media(tmp_path, spoken)
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,1100",
                "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                f"--use-file-for-fake-video-capture={y4m}", f"--use-file-for-fake-audio-capture={wav}",
                f"--user-data-dir={tmp_path / 'chrome-profile'}"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture
def app(tmp_path):
    from demos.app import build_demo
    from demos.context import AppSettings
    from demos.review import ReviewSettings

    # accept only at certainty: the smiling astronaut (p ~ 0.99) is then routed to review
    settings = AppSettings(data_dir=tmp_path / "app", preload=("emotion", "asr"),
                           review=ReviewSettings(accept_at=1.0, min_interval_s=2.0))
    demo = build_demo(settings)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True,
                            quiet=True, ssr_mode=False, max_file_size=settings.max_file_size, run_history=False)
    demo.livelearner_context.hub.preload(settings.preload)
    yield url, demo.livelearner_context
    demo.close()


def wait_for(check, what: str, timeout_s: float = WAIT_S):
    deadline = time.monotonic() + timeout_s
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as e:  # element not there yet / re-rendered
            last_error = e
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what} ({last_error})")


def click_button(root, text: str) -> None:
    from selenium.webdriver.common.by import By

    buttons = [b for b in root.find_elements(By.TAG_NAME, "button") if b.is_displayed() and text in b.text]
    assert buttons, f"no visible button {text!r}"
    buttons[0].click()


def open_tab(driver, name: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.XPATH, f"//button[@role='tab' and contains(., '{name}')]").click()
    time.sleep(0.5)


def test_page_end_to_end(app, browser, artifacts_dir):
    from selenium.webdriver.common.by import By

    url, ctx = app
    d = browser
    d.get(url)
    wait_for(lambda: d.find_element(By.ID, "camera"), "the page")
    d.find_element(By.ID, "person").find_element(By.CSS_SELECTOR, "textarea, input").send_keys("ana")

    # Webcam: live predictions on the fake camera's face
    camera = d.find_element(By.ID, "camera")
    click_button(camera, "Access Webcam")
    wait_for(lambda: [b for b in camera.find_elements(By.TAG_NAME, "button") if b.text == "Record"], "the record button")
    click_button(camera, "Record")
    wait_for(lambda: "happy" in d.find_element(By.ID, "vision-probs").text, "a 'happy' prediction")
    wait_for(lambda: "results/s" in d.find_element(By.ID, "vision-info").text, "fps")
    time.sleep(2)  # a few more frames, for the screenshot
    d.save_screenshot(str(artifacts_dir / "e2e_webcam.png"))

    # Speak: the fake microphone's sentence becomes a committed transcript
    open_tab(d, "Speak")
    mic = d.find_element(By.ID, "mic")
    click_button(mic, "Record")

    def transcript() -> str:
        return d.find_element(By.ID, "transcript").find_element(By.TAG_NAME, "textarea").get_attribute("value")

    text = wait_for(lambda: transcript() if any(w in transcript().lower() for w in ("help", "hello", "homework")) else "",
                    "a transcript")
    wait_for(lambda: "ASR confidence" in d.find_element(By.ID, "speak-info").text, "the transcript's class")
    d.save_screenshot(str(artifacts_dir / "e2e_speak.png"))
    click_button(mic, "Stop")

    # Review: the uncertain webcam prediction is queued, shown, and confirmed by the named reviewer
    open_tab(d, "Review")
    pending = wait_for(lambda: ctx.review.pending(task="emotion"), "a review item")
    item_id = pending[0].id
    click_button(d.find_element(By.TAG_NAME, "body"), "Refresh queue")
    wait_for(lambda: str(item_id) in d.find_element(By.ID, "review-queue").text, "the queue table")
    box = d.find_element(By.ID, "review-id").find_element(By.TAG_NAME, "input")
    box.clear()
    box.send_keys(str(item_id))
    click_button(d.find_element(By.TAG_NAME, "body"), "Show item")
    wait_for(lambda: "model says" in d.find_element(By.ID, "review-desc").text, "the item")
    click_button(d.find_element(By.TAG_NAME, "body"), "Confirm / correct")
    wait_for(lambda: "confirmed as" in d.find_element(By.ID, "review-msg").text, "the resolution")
    item = ctx.review.get(item_id)
    assert item.status == "confirmed" and item.reviewer == "ana"
    assert ctx.samples.get(item.sample_id).label == item.label
    d.save_screenshot(str(artifacts_dir / "e2e_review.png"))

    # Monitor: the webcam's input statistics are being watched
    open_tab(d, "Monitor")
    wait_for(lambda: "emotion/brightness" in d.page_source, "the drift table")
    d.save_screenshot(str(artifacts_dir / "e2e_monitor.png"))

    # Bad input: malformed questionnaire answers -> a visible error, and the page still answers
    open_tab(d, "Questions")
    d.find_element(By.ID, "pasted").find_element(By.TAG_NAME, "textarea").send_keys("1,2,banana")
    click_button(d.find_element(By.TAG_NAME, "body"), "Classify my answers")
    toast = wait_for(lambda: [t for t in d.find_elements(By.CSS_SELECTOR, "[data-testid='toast-body']") if "answers" in t.text],
                     "an error toast")
    assert "Paste exactly" in toast[0].text
    d.save_screenshot(str(artifacts_dir / "e2e_error.png"))
    open_tab(d, "Webcam")
    wait_for(lambda: "results/s" in d.find_element(By.ID, "vision-info").text, "the page after the error")
    assert text.strip()
