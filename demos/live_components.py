"""The live camera and microphone on the page: two gr.HTML components whose scripts (demos/web/) talk to
the live connection (demos/live_transport.py).

Each component's value is {"token": ...}, set when the page loads (live_transport.open_page); its
template never depends on the value, so setting it does not re-render the video or the transcript.
The scripts are the browser side of the app, kept in their own files and tested in Chromium.
"""
from __future__ import annotations

from importlib import resources

import gradio as gr

CAMERA_HTML = """
<div class="ll-camera" id="live-camera-root">
  <div class="ll-stage"><video autoplay playsinline muted></video><canvas class="ll-overlay"></canvas></div>
  <div class="ll-controls">
    <button class="ll-start" type="button">Start camera</button>
    <button class="ll-stop" type="button">Stop</button>
    <span class="ll-status">Press Start camera: your camera is shown here and the model's results drawn over it.</span>
  </div>
  <div class="ll-age"></div>
  <div class="ll-probs"></div>
  <div class="ll-summary"></div>
</div>
"""

MIC_HTML = """
<div class="ll-mic" id="live-mic-root">
  <div class="ll-controls">
    <button class="ll-record" type="button">Record</button>
    <button class="ll-stop" type="button">Stop</button>
    <span class="ll-status">Press Record and speak: committed words appear below, the unsettled tail in grey.</span>
  </div>
  <div class="ll-transcript"><span class="ll-committed"></span><span class="ll-partial"></span></div>
  <div class="ll-problem"></div>
  <div class="ll-probs"></div>
  <div class="ll-info"></div>
</div>
"""


def web_file(name: str) -> str:
    """A file of demos/web/ (shipped with the package)."""
    return resources.files("demos").joinpath("web", name).read_text(encoding="utf-8")


def live_camera(elem_id: str = "live-camera") -> gr.HTML:
    return gr.HTML({"token": ""}, html_template=CAMERA_HTML, css_template=web_file("live.css"),
                   js_on_load=web_file("live_socket.js") + "\n" + web_file("live_camera.js"), elem_id=elem_id,
                   apply_default_css=False)


def live_microphone(elem_id: str = "live-mic") -> gr.HTML:
    return gr.HTML({"token": ""}, html_template=MIC_HTML, css_template=web_file("live.css"),
                   js_on_load=web_file("live_socket.js") + "\n" + web_file("live_mic.js"), elem_id=elem_id,
                   apply_default_css=False, worklet=web_file("mic_worklet.js"))
