"""B4 peer: the /v1 device routes that the benchmark drives, in FastAPI (uvicorn, 1 worker).

In memory, one asyncio lock per device so that busy refusal is correct. Run:
    python3 switch_fastapi.py PORT
"""

import asyncio
import sys
import time

import uvicorn
from fastapi import FastAPI, HTTPException, Request

app = FastAPI()
devices = {}
locks = {}
revision = 0


def view(name):
    d = devices[name]
    return {
        "name": name,
        "type": "switch",
        "state": d["state"],
        "attributes": {"state": d["state"]},
        "status": "idle" if d["transition"] is None else d["transition"]["command"],
        "transition": d["transition"],
        "revision": d["revision"],
    }


def bump():
    global revision
    revision += 1
    return revision


@app.post("/v1/devices", status_code=201)
async def create(body: dict):
    name = body["name"]
    devices[name] = {"state": "OFF", "transition": None, "revision": bump()}
    locks[name] = asyncio.Lock()
    return view(name)


@app.get("/v1/devices/{name}")
async def get(name: str):
    if name not in devices:
        raise HTTPException(404, "no such device")
    return view(name)


async def finish(name, target, seconds):
    await asyncio.sleep(seconds)
    async with locks[name]:
        d = devices[name]
        d["state"], d["transition"], d["revision"] = target, None, bump()


@app.post("/v1/devices/{name}/commands/{command}")
async def command(name: str, command: str, request: Request):
    if name not in devices:
        raise HTTPException(404, "no such device")
    body = await request.json() if await request.body() else {}
    target = {"switch_on": "ON", "switch_off": "OFF"}.get(command)
    if target is None:
        raise HTTPException(404, "no such command")
    async with locks[name]:
        d = devices[name]
        if d["transition"] is not None:
            raise HTTPException(409, "busy")
        if d["state"] == target:
            return view(name)
        seconds = float(body.get("duration") or 0)
        d["transition"] = {"command": command, "started_at": time.time()}
        d["revision"] = bump()
        asyncio.get_running_loop().create_task(finish(name, target, seconds))
        return view(name)


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), workers=1, log_level="warning", access_log=False)
