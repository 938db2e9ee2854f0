"""Stand-in for the vLLM API server, for fast tests of process and state handling.

Accepts vLLM's command line (``--port``, ``--served-model-name``, ...), answers
``/health`` and ``/v1/models``, and spawns a child in its process group as vLLM does
with its engine core. ``FAKE_VLLM_MODE`` picks a misbehaviour:
``ok`` | ``die`` (exit at once) | ``ignore-term`` (survive SIGTERM) | ``unhealthy`` (503).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODE = os.environ.get("FAKE_VLLM_MODE", "ok")


def parse() -> argparse.Namespace:
    """vLLM-style arguments; unknown ones are ignored like a real server's defaults."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--served-model-name")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    return parser.parse_known_args()[0]


def handler(name: str) -> type[BaseHTTPRequestHandler]:
    """Request handler serving the two endpoints the server module uses."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/health":
                self.reply(503 if MODE == "unhealthy" else 200, b"")
            elif self.path == "/v1/models":
                self.reply(200, json.dumps({"data": [{"id": name}]}).encode())
            else:
                self.reply(404, b"")

        def reply(self, code: int, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


def main() -> None:
    args = parse()
    print(f"fake vllm mode={MODE} port={args.port}", flush=True)
    if MODE == "die":
        print("ValueError: fake model failed to load", flush=True)
        sys.exit(3)
    if MODE == "ignore-term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    print(f"child pid={child.pid}", flush=True)
    server = ThreadingHTTPServer((args.host, args.port), handler(args.served_model_name or args.model))
    server.serve_forever()


if __name__ == "__main__":
    main()
