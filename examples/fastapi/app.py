"""The FastAPI starter behind valet: a streaming endpoint, an environment report, a health check.

valet runs it with uvicorn on a free loopback port (the "{port}" in valet.toml) and strips "/api"
before requests arrive, so /api/stream in the browser is /stream here.
"""

import asyncio
import json
import os
import sys
import time

from fastapi import FastAPI, Query, Request
from fastapi.responses import StreamingResponse

app = FastAPI(title="valet FastAPI starter")
STARTED = time.time()

# Only these variables are shown: the process environment may hold secrets valet passed in.
SHOWN_ENV = ("PORT", "VALET_INSTANCE_KEY", "VALET_CLASS", "VALET_DATA_DIR")


@app.get("/health")
def health():
    return {"status": "ok"}


@app.get("/env")
def env(request: Request):
    shown = {name: os.environ.get(name) for name in SHOWN_ENV}
    shown.update({k: v for k, v in os.environ.items() if k.startswith("VALET_PORT_")})
    return {
        "env": shown,
        "pid": os.getpid(),
        "python": sys.version.split()[0],
        "uptime_seconds": round(time.time() - STARTED, 1),
        # What valet tells the backend about the original request.
        "forwarded": {
            name: request.headers.get(name)
            for name in ("x-forwarded-prefix", "x-forwarded-for", "x-forwarded-host", "x-request-id")
        },
    }


@app.get("/stream")
async def stream(n: int = Query(5, ge=1, le=100), delay_ms: int = Query(500, ge=0, le=10_000)):
    async def events():
        for i in range(n):
            payload = {"i": i, "of": n, "time": time.strftime("%H:%M:%S"), "pid": os.getpid()}
            yield f"data: {json.dumps(payload)}\n\n"
            await asyncio.sleep(delay_ms / 1000)
        # A named final event: EventSource reconnects whenever a stream ends, so the page
        # needs an explicit "done" to know it should close instead.
        yield "event: done\ndata: {}\n\n"

    # no-cache and X-Accel-Buffering keep any proxy in between from holding events back.
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)
