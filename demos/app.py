"""The livelearner page: one Gradio Blocks app with six tabs.

`build_demo(settings)` builds the page; it loads no model (models load on first use, or in the
background after launch, with their state in the status line). Handlers are plain functions in
demos/tab_*.py, tested without a browser; this file only wires components to them.

The live camera and microphone do not go through Gradio's events: their components (demos/live_components.py)
talk to a WebSocket route on the same server (demos/live_transport.py), which `LivePage.launch` adds to
Gradio's FastAPI app; when the page loads it gets a token naming its session states, so what the live
connection does is what the Train, Review and Explain buttons see.

Concurrency: the models are shared and thread-safe for inference; button events run up to
`max_concurrency` at once; the queue is bounded (`queue_max_size`) and uploads are capped by
`max_file_size` at launch. Per-user state (face tracks, the transcriber's buffer) lives in gr.State.
"""
from __future__ import annotations

import functools
import time

import gradio as gr

from demos import live_transport, tab_monitor, tab_questions, tab_review, tab_speak, tab_train, tab_webcam
from demos.context import AppContext, AppSettings
from demos.live_components import live_camera, live_microphone

TITLE = "livelearner"
INTRO = (
    "Live predictions with their uncertainty, each saying whether and on what data it was calibrated: "
    "green = accepted, amber **?** = sent to a human "
    "(Review tab), grey = the model abstains. Train your own model in the Train tab and watch for drift in Monitor."
)


REACHABLE_TIMEOUT_S = 60.0  # how long a started server may take to answer its first request


class LivePage(gr.Blocks):
    """gr.Blocks whose server also carries the live connection's WebSocket route (same origin, same port,
    behind the same --auth and --share as the page).

    Started without blocking, it also waits up to REACHABLE_TIMEOUT_S for the server to answer, instead of
    Gradio's own check, which gives up after one 3 s request and then refuses to start ("When localhost is
    not accessible, a shareable link must be created"): on a busy 2-core laptop (a test run with four busy
    processes beside it) the first answer took longer than that, though the server was fine."""

    live_routes: list = []

    def launch(self, *args, **kwargs):
        app_kwargs = dict(kwargs.pop("app_kwargs", None) or {})
        app_kwargs["routes"] = [*app_kwargs.get("routes", []), *self.live_routes]
        patient = bool(kwargs.get("prevent_thread_lock")) and not kwargs.get("share")
        if patient:
            kwargs["_frontend"] = False  # Gradio's 3-second reachability check; ours follows
        result = super().launch(*args, app_kwargs=app_kwargs, **kwargs)
        if patient:
            wait_reachable(self.local_url, REACHABLE_TIMEOUT_S)
        return result


def wait_reachable(url: str, timeout_s: float) -> None:
    """Wait until the server at `url` answers an HTTP request (any status); OSError after timeout_s."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            httpx.head(url, timeout=min(10.0, timeout_s), verify=False)
            return
        except httpx.HTTPError as e:
            if time.monotonic() > deadline:
                raise OSError(f"The page's server at {url} did not answer within {timeout_s:.0f} s ({e}). "
                              "Is a proxy or firewall blocking localhost?") from e
            time.sleep(0.5)


def build_demo(settings: AppSettings | None = None, ctx: AppContext | None = None) -> gr.Blocks:
    settings = settings or (ctx.settings if ctx is not None else AppSettings())
    ctx = ctx or AppContext(settings)
    bind = functools.partial
    hidden = dict(api_visibility="undocumented")  # page plumbing, not part of the documented API

    def closing(close):  # a page's session ended: its live token goes, then its own state
        return lambda state: (live_transport.close_page(ctx, state), close(state))

    # delete_cache: every annotated photo is a file in Gradio's cache; old ones are removed so a
    # long session does not fill the disk
    with LivePage(title=TITLE, analytics_enabled=False, delete_cache=settings.cache_delete) as demo:
        gr.Markdown(f"# {TITLE}\n{INTRO}")
        status = gr.Markdown(ctx.hub.status_markdown(), elem_id="model-status")
        gr.Timer(2.0).tick(ctx.hub.status_markdown, None, status, queue=False, show_progress="hidden", **hidden)
        webcam_state = gr.State(None, time_to_live=3600, delete_callback=closing(tab_webcam.close_state))
        speak_state = gr.State(None, time_to_live=3600, delete_callback=closing(tab_speak.close))
        person = gr.Textbox(label="Your name (person in front of the camera / reviewer)", value="", max_lines=1,
                            elem_id="person")

        # --- Webcam -----------------------------------------------------------------------------
        with gr.Tab("Webcam", id="webcam") as webcam_tab:
            with gr.Row():
                with gr.Column():
                    camera = live_camera()
                    task = gr.Dropdown(tab_webcam.task_choices(ctx), value=tab_webcam.task_choices(ctx)[0],
                                       label="Task", elem_id="vision-task")
                    photo = gr.File(label="…or upload a photo", file_types=["image"], elem_id="photo")
                    photo_btn = gr.Button("Run on photo", elem_id="photo-run")
                    with gr.Row():
                        local_spec = gr.Textbox("0", label="…or this machine's camera (number; only when the page "
                                                "is not shared)", max_lines=1)
                        local_start = gr.Button("Start local camera")
                        local_stop = gr.Button("Stop")
                with gr.Column():
                    annotated = gr.Image(label="Photo / this machine's camera", format="jpeg", elem_id="annotated")
                    probs = gr.Label(num_top_classes=4, label="Class probabilities (calibrated when the model is)", elem_id="vision-probs")
                    vision_info = gr.Markdown(elem_id="vision-info")
                    explain_btn = gr.Button("Explain the last frame", elem_id="explain")
                    heatmap = gr.Image(label="Grad-CAM", format="jpeg", visible=True, elem_id="heatmap")
                    explain_info = gr.Markdown()
            # the live camera reads its task and the person's name from the session state
            def webcam_choice(state, task_name, who, request: gr.Request):
                return live_transport.webcam_choice(ctx, state, task_name, who, request)

            for control in (task, person):
                control.change(webcam_choice, [webcam_state, task, person], [webcam_state], queue=False,
                               show_progress="hidden", **hidden)
            local_event = local_start.click(bind(tab_webcam.local_camera, ctx), [local_spec, task, person],
                                            [annotated, probs, vision_info], concurrency_limit=1,
                                            concurrency_id="local-camera", show_progress="hidden", **hidden)
            local_stop.click(None, None, None, cancels=[local_event], **hidden)
            photo_btn.click(bind(tab_webcam.process_upload, ctx), [photo, task, person],
                            [annotated, probs, vision_info], api_name="photo")
            # one frame per call, same per-user state: what bench/load.py drives with gradio_client. A file,
            # not an image: our reader checks its pixel count before decoding and words its own errors
            frame_in = gr.File(file_types=["image"], visible=False)
            frame_btn = gr.Button(visible=False)
            frame_btn.click(bind(tab_webcam.process_frame, ctx), [frame_in, task, webcam_state, person],
                            [annotated, probs, vision_info, webcam_state], api_name="webcam_frame",
                            concurrency_limit=settings.max_streams, concurrency_id="streams",
                            trigger_mode="always_last", show_progress="hidden")
            # a script's way onto the live connection: a token for a session of its own (bench.load uses it)
            def live_session(task_name: str, who: str, request: gr.Request) -> str:
                return live_transport.open_script_session(ctx, task_name, who, request)

            script_task, script_person, script_token = (gr.Textbox(visible=False) for _ in range(3))
            gr.Button(visible=False).click(live_session, [script_task, script_person], [script_token],
                                           api_name="live_session", queue=False)
            explain_btn.click(bind(tab_webcam.explain_last, ctx), [webcam_state], [heatmap, explain_info], **hidden)
            # a model deployed from the Train tab appears in the task list when the tab is opened again
            webcam_tab.select(lambda: gr.Dropdown(choices=tab_webcam.task_choices(ctx)), None, [task], queue=False, **hidden)

        # --- Speak ------------------------------------------------------------------------------
        with gr.Tab("Speak", id="speak"):
            with gr.Row():
                with gr.Column():
                    mic = live_microphone()
                    mode = gr.Radio(list(tab_speak.MODES), value="meaning", label="Classify by: meaning (the "
                                    "transcript's text) or commands (the typed words, scored on the audio)",
                                    elem_id="speak-mode")
                    labels = gr.Textbox(label="meaning: classes for zero-shot, as 'label: description' separated by "
                                        "commas (or deploy a trained text model)",
                                        value=tab_speak.DEFAULT_LABELS, elem_id="speak-labels")
                    commands = gr.Textbox(label="commands: the words to listen for, separated by commas",
                                          value=tab_speak.DEFAULT_COMMANDS, max_lines=1, elem_id="speak-commands")
                    upload = gr.Audio(sources=["upload"], type="filepath", label="…or upload a recording",
                                      elem_id="speak-upload")
                    upload_btn = gr.Button("Transcribe the recording", elem_id="speak-run")
                with gr.Column():
                    committed = gr.Textbox(label="Uploaded recording: transcript", lines=4, elem_id="transcript")
                    partial = gr.Markdown(elem_id="partial")
                    text_probs = gr.Label(num_top_classes=4, label="Uploaded recording: class", elem_id="speak-probs")
                    speak_info = gr.Markdown(elem_id="speak-info")
                    why_btn = gr.Button("Why? Nearest training phrases", elem_id="speak-why")
                    why = gr.Markdown(elem_id="speak-why-text")
            # the live microphone reads the mode, classes, commands and name from the session state
            def speak_choice(state, mode_name, labels_text, commands_text, who, request: gr.Request):
                return live_transport.speak_choice(ctx, state, mode_name, labels_text, commands_text, who, request)

            for control in (mode, labels, commands, person):
                control.change(speak_choice, [speak_state, mode, labels, commands, person], [speak_state], queue=False,
                               show_progress="hidden", **hidden)
            why_btn.click(bind(tab_speak.explain_last, ctx), [speak_state], [why], **hidden)
            upload_btn.click(bind(tab_speak.process_file, ctx), [upload, labels, person, mode, commands],
                             [committed, partial, text_probs, speak_info], api_name="transcribe")

        # --- Questions --------------------------------------------------------------------------
        with gr.Tab("Questions", id="questions"):
            tab_questions.build(ctx, person)

        # --- Train ------------------------------------------------------------------------------
        with gr.Tab("Train", id="train"):
            tab_train.build(ctx, webcam_state, speak_state, person)

        # --- Review -----------------------------------------------------------------------------
        with gr.Tab("Review", id="review") as review_tab:
            review_summary = gr.Markdown(elem_id="review-summary")
            with gr.Row():
                review_task = gr.Textbox(label="Only task (empty = all)", max_lines=1)
                review_scope = gr.Radio(list(tab_review.SCOPES), value="mine", elem_id="review-scope",
                                        label="Show: mine (inputs from the name at the top) or everyone's")
                review_refresh = gr.Button("Refresh queue", elem_id="review-refresh")
            queue = gr.Dataframe(headers=tab_review.QUEUE_COLUMNS, interactive=False, label="Waiting (oldest first)",
                                 elem_id="review-queue")
            with gr.Row():
                item_id = gr.Number(label="Item id", precision=0, elem_id="review-id")
                show_btn = gr.Button("Show item", elem_id="review-show")
            item_desc = gr.Markdown(elem_id="review-desc")
            with gr.Row():
                item_image = gr.Image(label="Input", interactive=False, height=240)
                item_audio = gr.Audio(label="Input", interactive=False)
                item_text = gr.Textbox(label="Input", interactive=False)
                item_probs = gr.Label(num_top_classes=4, label="Model's probabilities")
            with gr.Row():
                correct_label = gr.Dropdown([], label="Correct label (empty = confirm the model)", allow_custom_value=True,
                                            elem_id="review-label")
                confirm_btn = gr.Button("Confirm / correct", variant="primary", elem_id="review-resolve")
                skip_btn = gr.Button("Skip (unusable)")
            review_msg = gr.Markdown(elem_id="review-msg")

            def refresh(task_filter, scope, who):
                return (tab_review.queue_summary(ctx, scope, who),
                        tab_review.queue_rows(ctx, task_filter, scope=scope, person=who))

            def pick(evt: gr.SelectData, rows):
                row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
                return rows.iloc[row, 0] if hasattr(rows, "iloc") else rows[row][0]

            def show(i):
                image, audio, text, p, desc, classes = tab_review.show_item(ctx, i)
                return image, audio, text, p, desc, gr.Dropdown(choices=[""] + classes, value="")

            review_inputs = [review_task, review_scope, person]
            review_scope.change(refresh, review_inputs, [review_summary, queue], **hidden)
            review_refresh.click(refresh, review_inputs, [review_summary, queue], **hidden)
            review_tab.select(refresh, review_inputs, [review_summary, queue], **hidden)
            item_outputs = [item_image, item_audio, item_text, item_probs, item_desc, correct_label]
            queue.select(pick, [queue], [item_id], **hidden).then(show, [item_id], item_outputs, **hidden)
            show_btn.click(show, [item_id], item_outputs, **hidden)
            confirm_btn.click(bind(tab_review.resolve, ctx), [item_id, person, correct_label], [review_msg],
                              api_name="review_resolve").then(refresh, review_inputs, [review_summary, queue], **hidden)
            skip_btn.click(bind(tab_review.skip, ctx), [item_id, person], [review_msg], **hidden).then(
                refresh, review_inputs, [review_summary, queue], **hidden)

        # --- Monitor ----------------------------------------------------------------------------
        with gr.Tab("Monitor", id="monitor") as monitor_tab:
            alarm = gr.Markdown(elem_id="drift-alarm")
            drift_table = gr.Dataframe(headers=tab_monitor.DRIFT_COLUMNS, interactive=False, label="Drift")
            drift_plot = gr.Plot(label="Reference vs recent")
            rate_plot = gr.Plot(label="Review rate")
            timing_table = gr.Dataframe(headers=tab_monitor.TIMING_COLUMNS, interactive=False,
                                        label="Compute vs wall time per pipeline")
            transport_table = gr.Dataframe(headers=tab_monitor.TRANSPORT_COLUMNS, interactive=False,
                                           label="Live camera and microphone connections", elem_id="transport")
            with gr.Row():
                monitor_btn = gr.Button("Refresh")
                auto = gr.Checkbox(label="Refresh every 5 s", value=False)
            timer = gr.Timer(5.0, active=False)
            outputs = [alarm, drift_table, drift_plot, rate_plot, timing_table, transport_table]
            monitor_btn.click(bind(tab_monitor.refresh, ctx), None, outputs, api_name="monitor")
            monitor_tab.select(bind(tab_monitor.refresh, ctx), None, outputs, **hidden)
            timer.tick(bind(tab_monitor.refresh, ctx), None, outputs, show_progress="hidden", **hidden)
            auto.change(lambda on: gr.Timer(active=on), [auto], [timer], **hidden)

        # a page gets its live token (and its session states) when it loads
        def page_load(webcam, speak, task_name, who, mode_name, labels_text, commands_text, request: gr.Request):
            return live_transport.open_page(ctx, webcam, speak, task_name, who, mode_name, labels_text, commands_text,
                                            request)

        demo.load(page_load, [webcam_state, speak_state, task, person, mode, labels, commands],
                  [webcam_state, speak_state, camera, mic], queue=False, show_progress="hidden", **hidden)

    demo.live_routes = live_transport.routes(ctx)
    demo.queue(default_concurrency_limit=settings.max_concurrency, max_size=settings.queue_max_size)
    demo.livelearner_context = ctx  # for the CLI (preload) and tests
    return demo
