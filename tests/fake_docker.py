"""A stand-in Docker engine for tests where none runs: the Docker Engine API on a unix
socket, as far as docker-py's `build` uses it (`GET /version`, `POST /vX/build`). It keeps
each build context it is sent (the tar archive) and answers with a successful build log;
it builds nothing."""

from __future__ import annotations

import io
import json
import socketserver
import tarfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlparse

API_VERSION = "1.41"


@dataclass
class BuildRequest:
    params: dict[str, str]
    context: bytes

    def names(self) -> list[str]:
        with tarfile.open(fileobj=io.BytesIO(self.context)) as tar:
            return sorted(m.name for m in tar.getmembers() if m.isfile())

    def read(self, name: str) -> bytes:
        with tarfile.open(fileobj=io.BytesIO(self.context)) as tar:
            member = tar.extractfile(name)
            assert member is not None, name
            return member.read()


@dataclass
class FakeDocker:
    socket_path: Path
    builds: list[BuildRequest] = field(default_factory=list)

    @contextmanager
    def running(self) -> Iterator[FakeDocker]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                return None

            def address_string(self) -> str:  # unix sockets have no host
                return "docker.sock"

            def _json(self, payload: object) -> None:
                body = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                path = urlparse(self.path).path
                if path.endswith("/version"):
                    self._json({"ApiVersion": API_VERSION, "Version": "fake", "MinAPIVersion": "1.24"})
                else:
                    self._json({})

            def do_HEAD(self) -> None:
                self._json({})

            def do_POST(self) -> None:
                url = urlparse(self.path)
                body = self._body()
                if not url.path.endswith("/build"):
                    self._json({})
                    return
                params = {k: v[-1] for k, v in parse_qs(url.query).items()}
                fake.builds.append(BuildRequest(params, body))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for line in ({"stream": f"context of {len(body)} bytes received\n"},
                             {"aux": {"ID": "sha256:" + "0" * 64}},
                             {"stream": f"Successfully tagged {params.get('t')}\n"}):
                    chunk = json.dumps(line).encode() + b"\r\n"
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.write(b"0\r\n\r\n")

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    out = b""
                    while True:
                        size = int(self.rfile.readline().strip() or b"0", 16)
                        if size == 0:
                            self.rfile.readline()
                            return out
                        out += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

        server = Server(str(self.socket_path), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
