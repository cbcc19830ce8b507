// The page's live connection (demos/live_transport.py): one WebSocket per live component, on the page's
// own origin. Shared by live_camera.js and live_mic.js (prepended to each when the page is built).
// Binary messages: [uint32 header length, big-endian][JSON header][payload] (capture/wire.py).
const livelearner = (window.livelearner = window.livelearner || {});

livelearner.socketUrl = (kind, token) => {
  const url = new URL("livelearner/live", new URL(".", window.location.href));
  url.protocol = window.location.protocol === "https:" ? "wss:" : "ws:";
  url.search = new URLSearchParams({ kind, token }).toString();
  return url.toString();
};

livelearner.pack = (header, payload) => {
  const head = new TextEncoder().encode(JSON.stringify(header));
  const body = payload instanceof ArrayBuffer ? new Uint8Array(payload)
    : new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
  const out = new Uint8Array(4 + head.length + body.length);
  new DataView(out.buffer).setUint32(0, head.length, false);
  out.set(head, 4);
  out.set(body, 4 + head.length);
  return out.buffer;
};

// "**bold**" and line breaks of the server's summaries, everything else as text
livelearner.markdownish = (text) => {
  const esc = String(text || "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  return esc.replace(/\*\*([^*]+)\*\*/g, "<b>$1</b>").replace(/\*([^*]+)\*/g, "<i>$1</i>").replace(/\n/g, "<br>");
};

// class -> probability bars (the biggest first, at most `top`)
livelearner.renderProbs = (box, probs, top = 4) => {
  box.textContent = "";
  if (!probs) return;
  const rows = Object.entries(probs).sort((a, b) => b[1] - a[1]).slice(0, top);
  for (const [label, p] of rows) {
    const row = document.createElement("div");
    row.className = "ll-prob";
    const name = document.createElement("span");
    name.className = "ll-prob-label";
    name.textContent = `${label} ${(100 * p).toFixed(0)}%`;
    const bar = document.createElement("span");
    bar.className = "ll-prob-bar";
    bar.style.width = `${Math.max(1, Math.round(100 * p))}%`;
    row.append(name, bar);
    box.append(row);
  }
};

// Connects, and reconnects after a drop while `wanted()` is true. handlers: onopen, onmessage(obj), onclose(ev)
livelearner.connect = (kind, token, handlers, wanted) => {
  const ws = new WebSocket(livelearner.socketUrl(kind, token));
  ws.binaryType = "arraybuffer";
  ws.onopen = () => handlers.onopen && handlers.onopen(ws);
  ws.onmessage = (ev) => {
    let message;
    try { message = JSON.parse(ev.data); } catch (e) { return; }
    handlers.onmessage(message);
  };
  ws.onclose = (ev) => {
    handlers.onclose && handlers.onclose(ev);
    if (wanted()) setTimeout(() => { if (wanted()) handlers.reconnect(); }, 1000);
  };
  return ws;
};
