"""The page in headless Chromium with a fake camera (a real face photo) and a fake microphone (espeak-ng).

Checks that live predictions are drawn over the page's own video from result data and a transcript
appears, that an uncertain prediction lands in the review queue and is resolved by a named reviewer
(becoming a training sample), that bad input gives a visible error while the page keeps working, that a
spoken command is classified on the page, and measures how long after the end of a spoken sentence its
committed text is on the page (test-artifacts/e2e_latency.json). Screenshots go to test-artifacts/.
No retries: these failed under load when Gradio's stream event dropped audio; the live connection
(demos/live_transport.py) delivers every chunk, and bench.browser measures it with busy processes beside.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from skimage import data

from bench import chromium
from bench.chromium import BrowserMissing, free_port, video_to_y4m

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

WAIT_S = 90  # generous: first use loads the emotion model and Whisper on a 2-core CPU


def fake_camera(folder: Path) -> Path:
    """A 640x480 10 fps y4m of the astronaut's face."""
    import cv2

    png = folder / "face.png"
    cv2.imwrite(str(png), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    try:
        return video_to_y4m(png, folder, fps=10)
    except BrowserMissing as e:
        pytest.skip(str(e))


def fake_microphone(folder: Path, spoken, phrases: tuple[str, ...]) -> tuple[Path, list[float]]:
    """The phrases spoken by espeak-ng, half a second of silence first and 2 s after each."""
    try:
        return chromium.fake_microphone([spoken(text, sample_rate=48000) for text in phrases], folder)
    except BrowserMissing as e:
        pytest.skip(str(e))


def launch_chromium(folder: Path, y4m: Path, wav: Path):
    try:
        return chromium.launch_chromium(folder, y4m, wav)
    except BrowserMissing as e:
        pytest.skip(str(e))


# The overlay as drawn: the newest result's first box mapped onto the canvas as the page maps it, and
# the canvas pixels on that box's left edge and in the middle of the box (the face shows through).
OVERLAY_JS = """
const root = document.querySelector('#live-camera');
const video = root.querySelector('video'), canvas = root.querySelector('canvas.ll-overlay');
const last = window.livelearner.camera.last;
if (!last || !last.predictions.length) return null;
const p = last.predictions[0];
const fit = Math.min(canvas.width / video.videoWidth, canvas.height / video.videoHeight);
const ox = (canvas.width - video.videoWidth * fit) / 2, oy = (canvas.height - video.videoHeight * fit) / 2;
const s = fit * (video.videoWidth / last.width);
const x0 = ox + p.box[0] * s, y0 = oy + p.box[1] * s, x1 = ox + p.box[2] * s, y1 = oy + p.box[3] * s;
const g = canvas.getContext('2d');
const px = (x, y) => Array.from(g.getImageData(Math.round(x), Math.round(y), 1, 1).data);
return {colour: p.colour, text: p.text, edge: px(x0, (y0 + y1) / 2), inside: px((x0 + x1) / 2, (y0 + y1) / 2),
        canvas: [canvas.width, canvas.height]};
"""



@pytest.fixture
def browser(tmp_path, spoken):
    wav, _ = fake_microphone(tmp_path, spoken, ("Hello, can you help me with my homework?",))
    driver = launch_chromium(tmp_path, fake_camera(tmp_path), wav)
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


def live_text(d, selector: str) -> str:
    from selenium.webdriver.common.by import By

    return d.find_element(By.CSS_SELECTOR, selector).text


def test_page_end_to_end(browser, app, artifacts_dir):  # media first: the app preloads torch in a thread
    from selenium.webdriver.common.by import By

    url, ctx = app
    d = browser
    d.get(url)
    wait_for(lambda: d.find_element(By.ID, "live-camera"), "the page")
    d.find_element(By.ID, "person").find_element(By.CSS_SELECTOR, "textarea, input").send_keys("ana")

    # Webcam: the page shows its own camera and draws the results (data) over it
    camera = d.find_element(By.ID, "live-camera")
    click_button(camera, "Start camera")
    wait_for(lambda: "happy" in live_text(d, "#live-camera .ll-probs"), "a 'happy' prediction")
    wait_for(lambda: "results/s" in live_text(d, "#live-camera .ll-summary"), "fps")
    time.sleep(2)  # a few more frames, for the screenshot
    overlay = wait_for(lambda: d.execute_script(OVERLAY_JS), "the overlay")
    assert "happy" in overlay["text"], overlay
    # the box's edge is drawn in the decision's colour; inside the box the video shows through (transparent)
    assert all(abs(a - b) <= 40 for a, b in zip(overlay["edge"][:3], overlay["colour"])) and overlay["edge"][3] > 200, overlay
    assert overlay["inside"][3] == 0, overlay
    # results keep coming (how fast is bench.browser's business), without errors, over the page's own video
    stats = wait_for(lambda: (s := d.execute_script("return window.livelearner.camera"))["results"] >= 5 and s,
                     "five results")
    assert stats["errors"] == 0 and stats["displayedFrames"] > stats["results"] / 2
    assert "ms ago" in live_text(d, "#live-camera .ll-age")  # what the overlay is drawing for
    d.save_screenshot(str(artifacts_dir / "e2e_webcam.png"))

    # Speak: the fake microphone's sentence becomes a committed transcript
    open_tab(d, "Speak")
    mic = d.find_element(By.ID, "live-mic")
    click_button(mic, "Record")

    def transcript() -> str:
        return live_text(d, "#live-mic .ll-committed")

    text = wait_for(lambda: transcript() if any(w in transcript().lower() for w in ("help", "hello", "homework")) else "",
                    "a transcript")
    wait_for(lambda: "ASR confidence" in live_text(d, "#live-mic .ll-info"), "the transcript's class")
    # zero-shot MiniLM is not calibrated, and the page says so
    assert "uncalibrated" in live_text(d, "#live-mic .ll-info")
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
    wait_for(lambda: "results/s" in live_text(d, "#live-camera .ll-summary"), "the page after the error")
    assert text.strip()


def test_spoken_command_and_transcript_latency(tmp_path, spoken, artifacts_dir):
    """A fresh page (models preloading in the background since start): the fake microphone says a sentence,
    then a command. Commands mode must show the command's class; the time from the end of the sentence
    to its last word in the committed transcript is measured and written to test-artifacts/e2e_latency.json.
    No retry: under load this once lost the sentence, because Gradio's stream event dropped audio chunks."""
    from selenium.webdriver.common.by import By

    from demos.app import build_demo
    from demos.context import AppSettings

    sentence, command = "Hello, can you help me with my homework?", "stop"
    wav, ends = fake_microphone(tmp_path, spoken, (sentence, command))
    settings = AppSettings(data_dir=tmp_path / "app")  # the default preload: what `livelearner app` does
    started = time.monotonic()
    demo = build_demo(settings)
    demo.launch(server_name="127.0.0.1", server_port=(port := free_port()), prevent_thread_lock=True, quiet=True,
                ssr_mode=False, max_file_size=settings.max_file_size, run_history=False)
    ctx = demo.livelearner_context
    ctx.hub.preload(settings.preload)
    d = launch_chromium(tmp_path, fake_camera(tmp_path), wav)
    try:
        d.get(f"http://127.0.0.1:{port}/")
        wait_for(lambda: d.find_element(By.ID, "live-camera"), "the page")
        open_tab(d, "Speak")
        wait_for(lambda: d.find_element(By.ID, "live-mic"), "the Speak tab")
        d.find_element(By.ID, "speak-mode").find_element(By.XPATH, ".//label[contains(., 'commands')]").click()
        box = d.find_element(By.ID, "speak-commands").find_element(By.CSS_SELECTOR, "textarea, input")
        box.clear()
        box.send_keys("yes, no, stop")
        # a user reads the status line; the Speak tab's three models were loading since the server started
        wait_for(lambda: all(f"{m}: ready" in d.find_element(By.ID, "model-status").text
                             for m in ("asr", "text-embedder", "command-scorer")), "the speech models", timeout_s=180)
        ready_s = time.monotonic() - started
        d.execute_script("window.__watch = ['my homework'];")
        mic = d.find_element(By.ID, "live-mic")
        click_button(mic, "Record")
        try:
            wait_for(lambda: "my homework" in d.execute_script("return window.__seen"), "the sentence's last word", 45)
        except AssertionError as e:
            raise AssertionError(f"{e}; the page shows {live_text(d, '#live-mic')!r}") from e
        try:
            wait_for(lambda: "stop p=" in live_text(d, "#live-mic .ll-info"), "the spoken command's class")
        except AssertionError as e:
            raise AssertionError(f"{e}; the page shows {live_text(d, '#live-mic')!r}") from e
        info = live_text(d, "#live-mic .ll-info")
        d.save_screenshot(str(artifacts_dir / "e2e_command.png"))
        timing = d.execute_script("return {opened: window.__mic_opened, seen: window.__seen['my homework'], "
                                  "lost: window.livelearner.mic.lastView.chunks_lost}")
        click_button(mic, "Stop")
    finally:
        d.quit()
        demo.close()
    # The fake device plays its file from the start when the recording's stream opens (the page opens one
    # per recording); the sentence ended ends[0] s into the file.
    opened_ms = timing["opened"][-1]
    latency_s = (timing["seen"] - opened_ms) / 1000 - ends[0]
    figures = {"latency_s": round(latency_s, 3), "sentence_end_in_file_s": round(ends[0], 3),
               "audio_chunks_lost": timing["lost"], "models_ready_after_start_s": round(ready_s, 1),
               "target_s": 1.5, "note": "2-core CPU shared with other jobs; one run"}
    (artifacts_dir / "e2e_latency.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(f"\nend of sentence -> committed text on the page: {latency_s:.2f} s ({figures})")
    assert "stop" in info and "heard" in info and timing["lost"] == 0
    # The target is 1.5 s (a speed target: the benchmark bench.asr holds it); here a generous bound
    # only catches a broken path (a model loading on first use, chunks piling up), on a loaded shared CPU.
    assert 0.0 < latency_s <= 6.0, figures
