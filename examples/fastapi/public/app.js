// A dependency-free single-page app: client-side routes with history.pushState, data from the
// FastAPI backend behind valet's /api route. Reloading /about or /stream works because valet's
// `not_found_handling = "single-page-application"` answers unknown paths with index.html.

const view = document.getElementById("view");
// The open EventSource, closed whenever the page leaves the stream view.
let stream = null;

const routes = {
  "/": home,
  "/stream": streamView,
  "/about": about,
};

async function home() {
  view.innerHTML = `
    <h1>FastAPI behind valet</h1>
    <p>The backend's <code>/env</code>, fetched from <code>/api/env</code>. The first request
       after a while starts uvicorn, so it can take a second.</p>
    <pre id="env">loading…</pre>`;
  const started = performance.now();
  const target = document.getElementById("env");
  try {
    const res = await fetch("/api/env");
    const body = await res.json();
    target.textContent = JSON.stringify(body, null, 2);
    target.insertAdjacentHTML("afterend",
      `<p class="muted">HTTP ${res.status} in ${Math.round(performance.now() - started)} ms</p>`);
  } catch (err) {
    target.textContent = `request failed: ${err}`;
  }
}

function streamView() {
  view.innerHTML = `
    <h1>Server-Sent Events</h1>
    <p>Events from <code>/api/stream</code>, shown as they arrive: valet passes each one on
       without buffering the response.</p>
    <p><button id="restart">Stream again</button> <span id="status" class="muted"></span></p>
    <ol id="events"></ol>`;
  document.getElementById("restart").addEventListener("click", startStream);
  startStream();
}

function startStream() {
  closeStream();
  const list = document.getElementById("events");
  const status = document.getElementById("status");
  list.innerHTML = "";
  status.textContent = "connecting…";
  stream = new EventSource("/api/stream?n=8&delay_ms=400");
  stream.onopen = () => { status.textContent = "streaming…"; };
  stream.onmessage = (event) => {
    const item = document.createElement("li");
    item.textContent = event.data;
    list.appendChild(item);
  };
  // The backend ends with a named "done" event; without closing here, EventSource would
  // reconnect and replay the stream forever.
  stream.addEventListener("done", () => {
    status.textContent = "done";
    closeStream();
  });
  stream.onerror = () => {
    status.textContent = "stream error (EventSource will retry)";
  };
}

function closeStream() {
  if (stream) {
    stream.close();
    stream = null;
  }
}

function about() {
  view.innerHTML = `
    <h1>About</h1>
    <p>This page has no file on disk: <code>/about</code> is a client-side route. valet serves
       <code>public/index.html</code> for it, and <code>app.js</code> draws this view.</p>
    <p>Requests to <code>/api/*</code> go to the <code>FastAPI</code> class, instance
       <code>name:fastapi</code>, with <code>/api</code> stripped.</p>`;
}

function notFound() {
  view.innerHTML = `<h1>Not found</h1><p>No client-side route for <code>${escapeHtml(location.pathname)}</code>.</p>`;
}

function escapeHtml(text) {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function render() {
  closeStream();
  const path = location.pathname.replace(/\/+$/, "") || "/";
  for (const link of document.querySelectorAll("a[data-route]")) {
    link.classList.toggle("active", link.getAttribute("href") === path);
  }
  (routes[path] || notFound)();
}

// Internal links change the URL without a page load; the browser's back button fires popstate.
document.addEventListener("click", (event) => {
  const link = event.target.closest("a[data-route]");
  if (!link || event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0) return;
  event.preventDefault();
  if (link.getAttribute("href") !== location.pathname) {
    history.pushState(null, "", link.getAttribute("href"));
    render();
  }
});
window.addEventListener("popstate", render);
render();
