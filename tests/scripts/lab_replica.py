"""A replica process for the network lab (tests/netlab.py), run inside a host's namespace on 127.0.0.1.

    lab_replica.py record UPSTREAM_PORT FILE   forward to a real server, append every answer to FILE (JSON lines)
    lab_replica.py replay FILE [--served-name N] [--root R] [--not-found] [--skew]
                                               answer recorded requests as the real server did
    lab_replica.py delay UPSTREAM_PORT SECONDS a TCP proxy that delivers the server's bytes SECONDS late

Prints its port on the first line of stdout, then serves until killed. The replay stub answers a request
it has no recording for with HTTP 500 (the item then fails loudly); ``--not-found`` answers every POST with
vLLM's 404 for an unknown model (a replica restarted under another name); ``--root``/``--skew`` make it
another checkpoint (another ``root`` in ``/v1/models``; every log-probability list reversed).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
import threading
import time

import httpx

from servers import StubServer


def key(path: str, payload: dict) -> str:
    return hashlib.sha256((path + json.dumps(payload, sort_keys=True)).encode()).hexdigest()


def model_entry(port: int) -> dict:
    return httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=30).json()["data"][0]


def record(upstream: int, path: str) -> StubServer:
    entry = model_entry(upstream)
    lock = threading.Lock()
    with open(path, "a") as out:
        out.write(json.dumps({"model": entry}) + "\n")

    def forward(request_path: str, payload: dict):
        answer = httpx.post(f"http://127.0.0.1:{upstream}{request_path}", json=payload, timeout=300)
        line = {"key": key(request_path, payload), "status": answer.status_code, "body": answer.json()}
        with lock, open(path, "a") as out:
            out.write(json.dumps(line) + "\n")
        return answer.status_code, line["body"]

    return StubServer(forward, models=[entry.pop("id")], model_info=entry)


def reversed_logprobs(value):
    """``value`` with the log-probabilities of every candidate list reversed (another judge's verdicts)."""
    if isinstance(value, dict):
        if "top_logprobs" in value and value["top_logprobs"]:
            tops = value["top_logprobs"]
            numbers = [entry["logprob"] for entry in tops][::-1]
            value = {**value, "top_logprobs": [{**entry, "logprob": lp} for entry, lp in zip(tops, numbers)]}
        return {name: reversed_logprobs(item) for name, item in value.items()}
    if isinstance(value, list):
        return [reversed_logprobs(item) for item in value]
    return value


def replay(path: str, served_name: str | None, root: str | None, not_found: bool, skew: bool) -> StubServer:
    lines = [json.loads(line) for line in open(path)]
    entry = dict(lines[0]["model"])
    answers = {line["key"]: (line["status"], line["body"]) for line in lines[1:]}
    name = served_name or entry.pop("id")
    entry.pop("id", None)
    if root is not None:
        entry["root"] = root

    def respond(request_path: str, payload: dict):
        if not_found:
            message = f"The model `{payload.get('model')}` does not exist."
            return 404, {"object": "error", "message": message, "code": 404}
        found = answers.get(key(request_path, payload))
        if found is None:
            return 500, {"object": "error", "message": "lab replica: no recorded answer for this request"}
        status, body = found
        return status, reversed_logprobs(body) if skew and request_path.endswith("/completions") else body

    return StubServer(respond, models=[name], model_info=entry)


async def delay_proxy(upstream: int, seconds: float) -> None:
    async def pump(reader, writer, delay: float) -> None:
        try:
            while chunk := await reader.read(65536):
                arrived = time.monotonic()
                await asyncio.sleep(max(0.0, arrived + delay - time.monotonic()))
                writer.write(chunk)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def handle(client_reader, client_writer) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", upstream)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(pump(client_reader, server_writer, 0.0), pump(server_reader, client_writer, seconds))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    modes = parser.add_subparsers(dest="mode", required=True)
    recorder = modes.add_parser("record")
    recorder.add_argument("upstream", type=int)
    recorder.add_argument("file")
    replayer = modes.add_parser("replay")
    replayer.add_argument("file")
    replayer.add_argument("--served-name")
    replayer.add_argument("--root")
    replayer.add_argument("--not-found", action="store_true")
    replayer.add_argument("--skew", action="store_true")
    delayer = modes.add_parser("delay")
    delayer.add_argument("upstream", type=int)
    delayer.add_argument("seconds", type=float)
    args = parser.parse_args()
    if args.mode == "delay":
        asyncio.run(delay_proxy(args.upstream, args.seconds))
        return
    if args.mode == "record":
        stub = record(args.upstream, args.file)
    else:
        stub = replay(args.file, args.served_name, args.root, args.not_found, args.skew)
    with stub:
        print(stub.server.server_address[1], flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    sys.exit(main())
