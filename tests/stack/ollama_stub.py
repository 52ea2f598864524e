"""An Ollama stand-in on loopback for the n8n rehearsal: /api/generate answers every prompt with
a fixed text, as Ollama does with `stream: false`, and any other POST (a workflow's webhook) is
taken as 204. Every request is recorded with its JSON body."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ANSWER = "All devices reported normally; nothing needs attention."


@dataclass
class OllamaStub:
    url: str
    requests: list[tuple[str, Any]] = field(default_factory=list)


@contextmanager
def ollama_stub() -> Iterator[OllamaStub]:
    stub = OllamaStub("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(min(length, 16 * 1024 * 1024))
            try:
                parsed: Any = json.loads(body)
            except ValueError:
                parsed = body.decode("utf-8", "replace")
            stub.requests.append((self.path, parsed))
            if self.path != "/api/generate":
                self.send_response(204)
                self.end_headers()
                return
            model = parsed.get("model") if isinstance(parsed, dict) else None
            answer = json.dumps({"model": model, "response": ANSWER, "done": True}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    stub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
