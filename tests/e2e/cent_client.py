"""PyPI `cent` (Centrifugo's HTTP API client) as the realtime integration tests drive it.

Usage: cent_client.py API_URL API_KEY METHOD JSON_PARAMS
Prints one JSON line: {"result": <the response model as JSON>} or {"error": <exception
class name>, "code": <API error code or null>}.
"""
import json
import sys

from cent import (
    BroadcastRequest,
    CentApiResponseError,
    Client,
    HistoryRequest,
    InfoRequest,
    PresenceRequest,
    PresenceStatsRequest,
    PublishRequest,
)

REQUESTS = {
    "publish": PublishRequest,
    "broadcast": BroadcastRequest,
    "history": HistoryRequest,
    "presence": PresenceRequest,
    "presence_stats": PresenceStatsRequest,
    "info": InfoRequest,
}


def main():
    url, key, method, params = sys.argv[1:5]
    client = Client(url, api_key=key, timeout=5)
    request = REQUESTS[method](**json.loads(params))
    try:
        result = getattr(client, method)(request)
        print(json.dumps({"result": json.loads(result.model_dump_json())}))
    except CentApiResponseError as e:
        print(json.dumps({"error": type(e).__name__, "code": e.code}))
    except Exception as e:  # noqa: BLE001 - the test asserts on the class name
        print(json.dumps({"error": type(e).__name__, "code": None}))


main()
