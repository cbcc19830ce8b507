// The Speak tab's live microphone: an AudioWorklet cuts the microphone's PCM into 0.1 s chunks, each is
// numbered and sent in order; the server decodes every one (catching up when it falls behind) and sends
// the transcript back as data. Chunks captured while the connection is down wait here (up to
// MAX_BUFFERED_S) and go out, in order, when it is back; beyond that the oldest go, and the server sees
// the gap in the numbers. Runs as the gr.HTML component's js_on_load; live_socket.js comes before it.
(() => {
  const CHUNK_S = 0.1;
  const MAX_BUFFERED_S = 30;
  const root = element.querySelector(".ll-mic");
  const recordButton = root.querySelector(".ll-record");
  const stopButton = root.querySelector(".ll-stop");
  const statusLine = root.querySelector(".ll-status");
  const committedBox = root.querySelector(".ll-committed");
  const partialBox = root.querySelector(".ll-partial");
  const probsBox = root.querySelector(".ll-probs");
  const infoBox = root.querySelector(".ll-info");
  const problemBox = root.querySelector(".ll-problem");
  const stats = (livelearner.mic = {
    chunksSent: 0, samplesSent: 0, sampleRate: 0, firstChunkAt: null, lastView: null, errors: 0, lastError: "",
    dropped: 0, recordingStartedAt: null,
  });
  let ws = null, audio = null, stream = null, node = null, recording = false, seq = 0, waiting = [];
  let workletUrl = null;

  const token = () => (props.value && props.value.token) || "";
  const status = (text) => { statusLine.textContent = text; };

  function show(view) {
    stats.lastView = view;
    committedBox.textContent = view.committed || "";
    partialBox.textContent = view.partial ? ` ${view.partial.replace(/^\*|\*$/g, "")}` : "";
    livelearner.renderProbs(probsBox, view.probs);
    infoBox.innerHTML = livelearner.markdownish(view.info);
    problemBox.textContent = view.problem || "";
    const parts = [`${view.received_s.toFixed(1)} s of audio received`];
    if (view.catching_up) parts.push(`catching up: ${view.backlog_s.toFixed(1)} s of speech waiting for recognition`);
    if (view.chunks_lost) parts.push(`${view.chunks_lost} chunks never arrived (${view.gaps} gaps; the transcript is cut there)`);
    if (recording || !view.final) status(parts.join(" · "));
  }

  function onMessage(m) {
    if (m.type === "speech") {
      show(m);
      if (m.final && !recording) {
        status(`Stopped · ${m.received_s.toFixed(1)} s of audio received` + (m.chunks_lost ? ` · ${m.chunks_lost} chunks lost` : ""));
        if (ws) ws.close();
      }
    }
    else if (m.type === "error") {
      stats.errors += 1;
      stats.lastError = m.message;
      problemBox.textContent = m.message;
    }
  }

  function flushWaiting() {
    while (ws && ws.readyState === 1 && waiting.length) {
      ws.send(waiting.shift());
    }
  }

  function onChunk(pcm) {
    if (!recording) return;
    if (stats.firstChunkAt === null) stats.firstChunkAt = performance.now();
    const header = { type: "audio", seq: seq++, sample_rate: audio.sampleRate, t_capture_ms: performance.now() };
    waiting.push(livelearner.pack(header, pcm));
    stats.chunksSent += 1;
    stats.samplesSent += pcm.length;
    const limit = Math.ceil(MAX_BUFFERED_S / CHUNK_S);
    while (waiting.length > limit) { waiting.shift(); stats.dropped += 1; }
    flushWaiting();
  }

  function connect() {
    if (!token()) { setTimeout(() => recording && connect(), 300); return; }
    ws = livelearner.connect("audio", token(), {
      onopen: (socket) => {
        if (seq === 0) socket.send(JSON.stringify({ type: "start" }));
        flushWaiting();
      },
      onmessage: onMessage,
      onclose: (ev) => { if (recording) status(`Live connection closed (${ev.code}); reconnecting, audio kept…`); },
      reconnect: connect,
    }, () => recording);
  }

  async function record() {
    if (recording) return;
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
      });
    } catch (e) {
      status(`No microphone: ${e.name}. Allow microphone access in the browser (or plug one in) and press Record again.`);
      return;
    }
    audio = new AudioContext();
    workletUrl = workletUrl || URL.createObjectURL(new Blob([props.worklet], { type: "text/javascript" }));
    await audio.audioWorklet.addModule(workletUrl);
    node = new AudioWorkletNode(audio, "livelearner-pcm-chunker", {
      numberOfInputs: 1, numberOfOutputs: 0,
      processorOptions: { chunkSamples: Math.round(audio.sampleRate * CHUNK_S) },
    });
    node.port.onmessage = (ev) => onChunk(ev.data);
    audio.createMediaStreamSource(stream).connect(node);
    seq = 0;
    waiting = [];
    stats.sampleRate = audio.sampleRate;
    stats.recordingStartedAt = performance.now();
    stats.firstChunkAt = null;
    recording = true;
    root.classList.add("ll-running");
    status("Recording…");
    connect();
  }

  async function stop() {
    if (!recording) return;
    node.port.postMessage("flush");
    await new Promise((r) => setTimeout(r, 50)); // the worklet's last partial chunk
    recording = false;
    root.classList.remove("ll-running");
    stream.getTracks().forEach((t) => t.stop());
    await audio.close();
    flushWaiting();
    if (ws && ws.readyState === 1) {
      ws.send(JSON.stringify({ type: "stop" }));
      status("Finishing the transcript…");
      const socket = ws;
      setTimeout(() => socket.close(), 60000); // the server answers "final" first
    }
  }

  recordButton.addEventListener("click", record);
  stopButton.addEventListener("click", stop);
})();
