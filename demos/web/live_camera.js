// The Webcam tab's live camera: the page shows the camera itself, at camera rate, and draws the model's
// results (data from the server, never an image) on a canvas over it. Frames go up only while fewer than
// MAX_IN_FLIGHT are unanswered, so they leave at the rate the server keeps pace with, newest first.
// Runs as the gr.HTML component's js_on_load (element, props, watch); live_socket.js comes before it.
(() => {
  const MAX_IN_FLIGHT = 2; // one being processed, one waiting on the server
  // Size and quality, measured on the face video (60 frames, emotion pipeline, CPU time): 640 px at 0.9 is
  // 61 KB and 3.3 ms to decode; 480 px at 0.7 is 21 KB and 1.3 ms, with the same face found in every frame and
  // probabilities within 0.08 (total variation) of 640/0.9's; 320 px drifts further (0.13) for 0.5 ms less.
  const MAX_SIDE_PX = 480; // frames are scaled so their long side is at most this (detectors downscale anyway)
  const JPEG_QUALITY = 0.7;
  const root = element.querySelector(".ll-camera");
  const video = root.querySelector("video");
  const overlay = root.querySelector("canvas.ll-overlay");
  const startButton = root.querySelector(".ll-start");
  const stopButton = root.querySelector(".ll-stop");
  const statusLine = root.querySelector(".ll-status");
  const ageLine = root.querySelector(".ll-age");
  const probsBox = root.querySelector(".ll-probs");
  const summaryBox = root.querySelector(".ll-summary");
  const grab = document.createElement("canvas");
  const stats = (livelearner.camera = {
    sent: 0, results: 0, skipped: 0, errors: 0, latencies: [], resultTimes: [], displayedFrames: 0,
    displayStart: null, lastError: "", last: null,
  });
  let ws = null, stream = null, running = false, inFlight = 0, seq = 0, newFrame = false, last = null, sending = false;

  const token = () => (props.value && props.value.token) || "";
  const status = (text) => { statusLine.textContent = text; };

  function countDisplayedFrames() {
    if (!running || !video.requestVideoFrameCallback) return;
    video.requestVideoFrameCallback(() => {
      if (stats.displayStart === null) stats.displayStart = performance.now();
      stats.displayedFrames += 1;
      newFrame = true;
      pump();
      countDisplayedFrames();
    });
  }

  function pump() {
    if (!running || sending || !ws || ws.readyState !== 1 || inFlight >= MAX_IN_FLIGHT) return;
    if (!newFrame || video.readyState < 2 || !video.videoWidth) return;
    newFrame = false;
    sendFrame();
  }

  function sendFrame() {
    const w = video.videoWidth, h = video.videoHeight;
    const scale = Math.min(1, MAX_SIDE_PX / Math.max(w, h));
    grab.width = Math.round(w * scale);
    grab.height = Math.round(h * scale);
    const captured = performance.now();
    grab.getContext("2d").drawImage(video, 0, 0, grab.width, grab.height);
    const header = { type: "frame", seq: seq++, t_capture_ms: captured, width: grab.width, height: grab.height };
    inFlight += 1;
    sending = true;
    grab.toBlob(async (blob) => {
      try {
        if (blob && ws && ws.readyState === 1) {
          ws.send(livelearner.pack(header, await blob.arrayBuffer()));
          stats.sent += 1;
        } else inFlight = Math.max(0, inFlight - 1);
      } finally {
        sending = false;
        pump();
      }
    }, "image/jpeg", JPEG_QUALITY);
  }

  function onMessage(m) {
    if (m.type === "result") {
      inFlight = Math.max(0, inFlight - 1);
      last = stats.last = m;
      stats.results += 1;
      stats.resultTimes.push(performance.now());
      requestAnimationFrame(() => {
        draw();
        stats.latencies.push(performance.now() - m.t_capture_ms); // capture in the page -> overlay drawn
      });
      summaryBox.innerHTML = livelearner.markdownish(m.summary);
      const biggest = (m.predictions || []).slice().sort((a, b) => area(b) - area(a))[0];
      livelearner.renderProbs(probsBox, biggest ? biggest.probs : null);
    } else if (m.type === "skipped") {
      inFlight = Math.max(0, inFlight - 1);
      stats.skipped += 1;
    } else if (m.type === "error") {
      if (m.seq !== null && m.seq !== undefined) inFlight = Math.max(0, inFlight - 1);
      stats.errors += 1;
      stats.lastError = m.message;
      status(m.message);
    }
    pump();
  }

  const area = (p) => (p.box ? (p.box[2] - p.box[0]) * (p.box[3] - p.box[1]) : 0);

  function draw() {
    const rect = video.getBoundingClientRect();
    if (overlay.width !== Math.round(rect.width) || overlay.height !== Math.round(rect.height)) {
      overlay.width = Math.round(rect.width);
      overlay.height = Math.round(rect.height);
    }
    const g = overlay.getContext("2d");
    g.clearRect(0, 0, overlay.width, overlay.height);
    if (!last || !video.videoWidth) return;
    // the video is shown with object-fit: contain; map the result frame's pixels onto it
    const fit = Math.min(overlay.width / video.videoWidth, overlay.height / video.videoHeight);
    const ox = (overlay.width - video.videoWidth * fit) / 2, oy = (overlay.height - video.videoHeight * fit) / 2;
    const s = fit * (video.videoWidth / last.width);
    g.font = "14px sans-serif";
    g.lineWidth = 2;
    for (const p of last.predictions || []) {
      const colour = `rgb(${p.colour.join(",")})`;
      const [x0, y0, x1, y1] = p.box ? p.box.map((v, i) => (i % 2 ? oy + v * s : ox + v * s))
        : [ox, oy, ox + video.videoWidth * fit, oy + video.videoHeight * fit];
      g.strokeStyle = colour;
      if (p.box) g.strokeRect(x0, y0, x1 - x0, y1 - y0);
      if (p.landmarks) {
        g.lineWidth = 1;
        for (const [a, b] of p.skeleton || []) {
          g.beginPath();
          g.moveTo(ox + p.landmarks[a][0] * s, oy + p.landmarks[a][1] * s);
          g.lineTo(ox + p.landmarks[b][0] * s, oy + p.landmarks[b][1] * s);
          g.stroke();
        }
        g.lineWidth = 2;
      }
      const textWidth = g.measureText(p.text).width;
      const ty = y0 - 26 >= 0 ? y0 - 10 : y1 + 18;
      g.fillStyle = "rgba(0,0,0,0.75)";
      g.fillRect(x0, ty - 15, textWidth + 6, 20);
      g.fillStyle = colour;
      g.fillText(p.text, x0 + 3, ty);
      const barWidth = Math.max(x1 - x0, 20);
      g.fillStyle = "rgb(60,60,60)";
      g.fillRect(x0, ty + 6, barWidth, 5);
      g.fillStyle = colour;
      g.fillRect(x0, ty + 6, barWidth * p.confidence, 5);
    }
  }

  function showAge() {
    if (!running) return;
    if (last) {
      const age = performance.now() - last.t_capture_ms;
      ageLine.textContent = `overlay shows the frame from ${age.toFixed(0)} ms ago` +
        ` (${last.task}, ${last.predictions.length} found) · ${last.fps.toFixed(1)} results/s`;
    }
    requestAnimationFrame(showAge);
  }

  function connect() {
    if (!token()) { status("Waiting for the page to finish loading…"); setTimeout(() => running && connect(), 300); return; }
    inFlight = 0;
    ws = livelearner.connect("video", token(), {
      onopen: () => { status("Live: frames go up as fast as results come back."); newFrame = true; pump(); },
      onmessage: onMessage,
      onclose: (ev) => { inFlight = 0; if (running) status(`Live connection closed (${ev.code}); reconnecting…` +
        (ev.code === 1006 ? " If this persists, reload the page (and log in again)." : "")); },
      reconnect: connect,
    }, () => running);
  }

  async function start() {
    if (running) return;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 640 }, height: { ideal: 480 } }, audio: false });
    } catch (e) {
      status(`No camera: ${e.name}. Allow camera access in the browser (or plug one in) and press Start again.`);
      return;
    }
    video.srcObject = stream;
    await video.play().catch(() => {});
    running = true;
    root.classList.add("ll-running");
    connect();
    countDisplayedFrames();
    showAge();
  }

  function stop() {
    running = false;
    root.classList.remove("ll-running");
    if (ws) ws.close();
    ws = null;
    if (stream) stream.getTracks().forEach((t) => t.stop());
    stream = null;
    last = null;
    draw();
    status("Stopped.");
  }

  startButton.addEventListener("click", start);
  stopButton.addEventListener("click", stop);
  window.addEventListener("resize", draw);
})();
