"""Access control for the service, as vLLM's ``--api-key``: with a key, every request under a
protected prefix (``/v1/``) needs ``Authorization: Bearer KEY`` (compared in constant time) or gets
401 with ``WWW-Authenticate: Bearer``; everything else (``/healthz``, the page, its static files,
the OpenAPI docs) stays open. :func:`check_bind` refuses to listen on a non-loopback address
without a key unless anonymous access is asked for explicitly; :func:`run_server` starts uvicorn on the address
they checked.

Not tied to the tagging routes: :class:`ApiKeyMiddleware` wraps any ASGI app of this stack.
"""
from __future__ import annotations

import hmac
import ipaddress
import json
import os
from collections.abc import Mapping

from musetag.errors import ConfigError

ENV = "MUSETAG_API_KEY"


def resolve_api_key(key: str | None, env: Mapping[str, str] | None = None) -> str | None:
    """The key given (``--api-key``), else ``$MUSETAG_API_KEY``, else None (no access control)."""
    env = os.environ if env is None else env
    key = key if key is not None else env.get(ENV)
    if key is None:
        return None
    if not key.strip():
        raise ConfigError(f"the API key is empty; give a non-empty --api-key or unset {ENV}")
    if any(c.isspace() for c in key) or not key.isprintable() or not key.isascii():
        raise ConfigError("the API key must be printable ASCII text without spaces (it is sent in an HTTP header, "
                          "and clients send other characters as different bytes: a browser sends 'clé' in Latin-1, "
                          "curl in UTF-8, so such a key would match for some clients only); "
                          "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'")
    return key


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``; anything else (0.0.0.0, ::, names) may be reachable."""
    name = host.strip().strip("[]")
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_bind(host: str, api_key: str | None, allow_anonymous: bool) -> None:
    """Refuse (ConfigError) to listen on a non-loopback ``host`` without a key unless ``allow_anonymous``."""
    if api_key is None and not allow_anonymous and not is_loopback(host):
        raise ConfigError(
            f"refusing to listen on {host} without an API key: anyone who can reach it could use the service. "
            f"Give --api-key KEY (or set {ENV}), listen on 127.0.0.1, or pass --allow-anonymous to serve the "
            "network without a key on purpose"
        )


def check_port(host: str, port: int) -> None:
    """Refuse (ConfigError) a ``host``:``port`` this process cannot listen on (in use, not an address of this
    machine) before the models load: uvicorn would say so only after, in its own words, with exit status 3
    (musetag's "some files failed")."""
    import errno
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}; give --host an address of this machine "
                          "(127.0.0.1, 0.0.0.0)") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(f"port {port} on {host} is in use (another musetag serve or label?); choose "
                                  "another --port, or stop the process that holds it") from None
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}; give --host an address of this "
                              "machine (127.0.0.1, 0.0.0.0) and a free --port") from None


# h11 (uvicorn's parser without httptools) resets the connection when a request's line and headers arrive in pieces
# that together pass its 16 KiB default, and parses them whole when they come in one read: a long URL (a deep,
# non-ASCII path percent-encoded in the label page's audio URL) got a JSON answer or a reset by chance.
# 128 KiB: ten times the longest label path's URL (4096 bytes of UTF-8, percent-encoded), and a bound on what a
# slow client can make the server hold per connection
MAX_REQUEST_HEAD = 128 * 1024


def run_server(app, host: str, port: int, log_level: str) -> None:
    """Run ``app`` with uvicorn until interrupted, request heads up to :data:`MAX_REQUEST_HEAD` answered by the app
    however TCP splits them (the service and the labelling page alike)."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level=log_level, h11_max_incomplete_event_size=MAX_REQUEST_HEAD)


def bearer_matches(header: str | None, key: str) -> bool:
    """``Authorization`` header value ``Bearer KEY`` (scheme case-insensitive), compared in constant time."""
    if not header:
        return False
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(token.strip().encode("utf-8"), key.encode("utf-8"))


class ApiKeyMiddleware:
    """ASGI middleware: HTTP requests under ``prefixes`` need ``Authorization: Bearer KEY``."""

    def __init__(self, app, api_key: str, prefixes: tuple[str, ...] = ("/v1/",)) -> None:
        self.app, self.key, self.prefixes = app, api_key, prefixes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith(self.prefixes):
            return await self.app(scope, receive, send)
        header = None
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                header = value.decode("latin-1")
                break
        if bearer_matches(header, self.key):
            return await self.app(scope, receive, send)
        if header is None:
            what = "no Authorization header"
        elif header.partition(" ")[0].lower() != "bearer":
            what = "an Authorization header without the Bearer scheme"
        else:
            what = "a wrong API key"
        body = json.dumps({"error": "unauthorized", "message": (
            f"this server needs an API key and the request has {what}; send the header "
            "'Authorization: Bearer KEY' with the key the server was started with (--api-key or "
            f"{ENV})")}, separators=(",", ":"), ensure_ascii=False).encode()  # as every other error body
        await send({"type": "http.response.start", "status": 401, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", b'Bearer realm="musetag"')]})
        await send({"type": "http.response.body", "body": body})
