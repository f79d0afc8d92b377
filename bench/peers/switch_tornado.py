"""B4 peer: the /v1 device routes that the benchmark drives, in Tornado.

In memory, one asyncio lock per device so that busy refusal is correct. Run:
    python3 switch_tornado.py PORT
"""

import asyncio
import json
import sys
import time

import tornado.web

devices = {}
locks = {}
state = {"revision": 0}


def bump():
    state["revision"] += 1
    return state["revision"]


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


class Devices(tornado.web.RequestHandler):
    def post(self):
        name = json.loads(self.request.body)["name"]
        devices[name] = {"state": "OFF", "transition": None, "revision": bump()}
        locks[name] = asyncio.Lock()
        self.set_status(201)
        self.write(view(name))


class Device(tornado.web.RequestHandler):
    def get(self, name):
        if name not in devices:
            raise tornado.web.HTTPError(404)
        self.write(view(name))


async def finish(name, target, seconds):
    await asyncio.sleep(seconds)
    async with locks[name]:
        d = devices[name]
        d["state"], d["transition"], d["revision"] = target, None, bump()


class Command(tornado.web.RequestHandler):
    async def post(self, name, command):
        if name not in devices:
            raise tornado.web.HTTPError(404)
        body = json.loads(self.request.body) if self.request.body else {}
        target = {"switch_on": "ON", "switch_off": "OFF"}.get(command)
        if target is None:
            raise tornado.web.HTTPError(404)
        async with locks[name]:
            d = devices[name]
            if d["transition"] is not None:
                self.set_status(409)
                self.write({"error": {"code": "busy", "message": "busy"}})
                return
            if d["state"] == target:
                self.write(view(name))
                return
            seconds = float(body.get("duration") or 0)
            d["transition"] = {"command": command, "started_at": time.time()}
            d["revision"] = bump()
            asyncio.get_running_loop().create_task(finish(name, target, seconds))
            self.write(view(name))


async def main(port):
    app = tornado.web.Application(
        [
            (r"/v1/devices", Devices),
            (r"/v1/devices/([^/]+)", Device),
            (r"/v1/devices/([^/]+)/commands/([^/]+)", Command),
        ]
    )
    app.listen(port, address="127.0.0.1")
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
