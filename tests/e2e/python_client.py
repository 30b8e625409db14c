"""A python-socketio client that goes through the gateway protocol once; tests/gateway_python.rs
runs it against a real cluster and echo agent.

Usage: python_client.py URL
Prints one JSON object: the session keys it was given and what it saw; exits 1 on a timeout.
"""

import json
import queue
import sys

import socketio

TIMEOUT = 20


class Client:
    def __init__(self, url):
        self.events = queue.Queue()
        self.sio = socketio.Client(reconnection=False)
        for name in ("gatewayConnectAck", "push", "ack", "gatewayError"):
            self.sio.on(name, self._recorder(name))
        self.sio.connect(url, transports=["websocket"], wait_timeout=TIMEOUT)

    def _recorder(self, name):
        return lambda data=None: self.events.put((name, data))

    def wait(self, name, pred=lambda _: True):
        while True:
            event, data = self.events.get(timeout=TIMEOUT)
            if event == name and pred(data):
                return data


def main(url):
    seen = {}
    first = Client(url)
    first.sio.emit("message", {"connect": True})
    seen["key1"] = first.wait("gatewayConnectAck")

    first.sio.emit("testCall", {"cn": "TestCall", "messageId": "py-1", "sendAck": True})
    seen["ack"] = first.wait("ack")
    push = first.wait("push", lambda d: d.get("correspondingMessageId") == "py-1")
    seen["push_queue"] = push.get("queue")
    first.sio.emit("message", {"ack": {"correspondingMessageId": "py-1"}})
    first.sio.disconnect()

    second = Client(url)
    second.sio.emit("message", {"reconnect": {"reconnectId": seen["key1"]}})
    seen["key2"] = second.wait("gatewayConnectAck")
    second.sio.emit("noSuchEvent", {})
    seen["error"] = second.wait("gatewayError").get("error")
    second.sio.disconnect()
    print(json.dumps(seen))


if __name__ == "__main__":
    try:
        main(sys.argv[1])
    except queue.Empty:
        print(json.dumps({"error": "timed out"}))
        sys.exit(1)
