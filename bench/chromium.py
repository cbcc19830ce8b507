"""Headless Chromium with a fake camera and microphone from files: how bench.browser and the browser tests
see the page as a user does.

    y4m = video_to_y4m(video_or_image, folder, fps=30)    # Chromium's fake camera plays a .y4m in a loop
    wav, ends = fake_microphone(clips, folder)            # 48 kHz WAV; where each clip's speech ends (s)
    driver = launch_chromium(folder, y4m, wav, js=TIMING_JS)

Chromium's fake devices restart their file for every new getUserMedia stream, so a page that opens the
microphone when Record is pressed hears the file from its start at that moment.
"""
from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import numpy as np

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"

# Runs in the page before Gradio's code: the time each microphone stream opened, and when the live
# transcript first held each phrase of window.__watch in its committed text (lower case, no punctuation,
# spaces ignored: Whisper writes "homework" as "Home Work" at times, the same words).
TIMING_JS = """
window.__mic_opened = [];
const open = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
navigator.mediaDevices.getUserMedia = async (c) => {
  const stream = await open(c);
  if (c && c.audio) window.__mic_opened.push(performance.now());
  return stream;
};
window.__seen = {};
setInterval(() => {
  const box = document.querySelector('#live-mic .ll-committed');  // committed words only, not the grey tail
  if (!box) return;
  const text = box.textContent.toLowerCase().replace(/[^a-z0-9']+/g, '');
  for (const w of (window.__watch || [])) {
    if (!(w in window.__seen) && text.includes(w.replace(/[^a-z0-9']+/g, ''))) window.__seen[w] = performance.now();
  }
}, 10);
"""


class BrowserMissing(RuntimeError):
    """Chromium, chromedriver, ffmpeg or sox is not installed (`make test` installs them)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def video_to_y4m(source: Path, folder: Path, *, fps: int = 30, size: tuple[int, int] = (640, 480),
                 seconds: float | None = None) -> Path:
    """A video (or a still image, looped) -> a .y4m of `size` at `fps` for Chromium's fake camera."""
    if shutil.which("ffmpeg") is None:
        raise BrowserMissing("ffmpeg is needed to make the fake camera file")
    w, h = size
    y4m = folder / f"{source.stem}_{fps}fps.y4m"
    loop = ["-loop", "1"] if source.suffix.lower() in (".png", ".jpg", ".jpeg") else []
    length = ["-t", str(seconds if seconds is not None else 1)] if loop or seconds is not None else []
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", *loop, "-i", str(source), *length, "-r", str(fps), "-vf",
                    f"scale={w}:{h}:force_original_aspect_ratio=decrease,pad={w}:{h}:(ow-iw)/2:(oh-ih)/2",
                    "-pix_fmt", "yuv420p", str(y4m)], check=True)
    return y4m


def speech_end_s(wav: Path) -> float:
    """Where the speech in `wav` ends (seconds): the end of silero VAD's last speech segment, without its pad.

    Not an energy threshold: a real recording's background noise (JFK's is about -30 dBFS) would put
    the end at the end of the file and make every latency look shorter than it is."""
    from capture.audio import load_audio
    from capture.vad import VadSettings
    from models.vad_model import load_vad

    vad = load_vad(VadSettings(backend="silero"))
    segments = vad.segments(load_audio(str(wav)))
    if not segments:
        raise ValueError(f"{wav} holds no speech")
    return float(segments[-1].end_s - vad.settings.speech_pad_s)


def fake_microphone(clips: list[Path], folder: Path, pad_s: float = 0.5, gap_s: float = 2.0) -> tuple[Path, list[float]]:
    """A 48 kHz mono WAV of the clips, pad_s of silence first and gap_s after each -> (path, where each
    clip's speech ends, in seconds from the file's start)."""
    import soundfile

    if shutil.which("sox") is None:
        raise BrowserMissing("sox is needed to make the fake microphone file")
    pieces, ends, t = [], [], 0.0
    for i, clip in enumerate(clips):
        lead = pad_s if i == 0 else 0.0
        padded = folder / f"mic_piece{i}.wav"
        subprocess.run(["sox", str(clip), "-r", "48000", "-c", "1", "-b", "16", str(padded), "pad", str(lead), str(gap_s)],
                       check=True)
        ends.append(t + lead + speech_end_s(clip))
        pieces.append(padded)
        t += soundfile.info(padded).duration
    wav = folder / "microphone.wav"
    subprocess.run(["sox", *map(str, pieces), str(wav)], check=True)
    return wav, ends


def launch_chromium(folder: Path, y4m: Path, wav: Path, js: str = TIMING_JS):
    """Headless Chromium (selenium) whose camera plays `y4m` and microphone plays `wav`; `js` runs in every page."""
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        raise BrowserMissing("Debian's chromium and chromium-driver are needed (make test installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,1100",
                "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                "--autoplay-policy=no-user-gesture-required",
                f"--use-file-for-fake-video-capture={y4m}", f"--use-file-for-fake-audio-capture={wav}",
                f"--user-data-dir={folder / 'chrome-profile'}"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": js})
    return driver
