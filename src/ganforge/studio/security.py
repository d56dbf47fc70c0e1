"""What keeps the studio safe on a network: the token, rate limits, bounds on every parameter, checks on
uploads, security headers, and errors that are a sentence in the person's language, never a traceback.

- Bound to 127.0.0.1 by default. On another address a token is required (generated and printed when not
  given); it comes as `Authorization: Bearer TOKEN`, a `?token=` in the address (then kept in a cookie),
  or that cookie.
- The owner is whoever connects from this computer (loopback): only they change settings, see private
  models or export answers. Others see only models marked shareable.
- Each client other than the owner gets `rate` requests a second (bursts of twice that): 429 beyond.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import threading
import time

from fastapi import Request
from fastapi.responses import JSONResponse, RedirectResponse

from ganforge.studio.words import language, say

MAX_SEED = 2**32 - 2  # what the provenance mark carries exactly
MAX_COUNT = 64
MAX_UPLOAD_MB = 20
MAX_UPLOAD_PIXELS = 40_000_000
IMAGE_FORMATS = {"PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"}
COOKIE = "ganforge_token"

HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
                               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


class StudioError(Exception):
    """A request the studio refuses: an HTTP status and a message key of `words.MESSAGES`."""

    def __init__(self, status: int, key: str, **values):
        super().__init__(key)
        self.status, self.key, self.values = status, key, values


def request_language(request: Request) -> str:
    return language(request.headers.get("accept-language"), request.query_params.get("lang") or request.cookies.get("lang"))


def error_response(request: Request, status: int, key: str, **values) -> JSONResponse:
    return JSONResponse({"error": say(request_language(request), key, **values), "code": key}, status_code=status,
                        headers=HEADERS)


def is_owner(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def new_token() -> str:
    return secrets.token_urlsafe(18)


class RateLimiter:
    """A token bucket per client: `rate` a second, bursts of `2 * rate`."""

    def __init__(self, rate: float):
        self.rate, self.burst = rate, 2 * rate
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, client: str) -> bool:
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens < 1:
                self._buckets[client] = (tokens, now)
                return False
            self._buckets[client] = (tokens - 1, now)
            if len(self._buckets) > 10_000:  # forget idle clients rather than grow without end
                self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < 60}
            return True


class Guard:
    """Token, rate limit and security headers for every request (plain ASGI: no per-request task, which
    matters when serving hundreds of images a second)."""

    def __init__(self, app, token: str | None, rate: float):
        self.app = app
        self.token = token
        self.limiter = RateLimiter(rate)
        self.headers = [(k.lower().encode(), v.encode()) for k, v in HEADERS.items()]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request = Request(scope)
        if self.token is not None:
            given = request.query_params.get("token")
            carried = given or request.cookies.get(COOKIE) or request.headers.get("authorization", "").removeprefix("Bearer ")
            if not carried or not hmac.compare_digest(carried.encode(), self.token.encode()):
                return await error_response(request, 401, "token")(scope, receive, send)
            if given and request.method == "GET" and not request.url.path.startswith("/api/"):
                # the address with ?token=: keep it in a cookie and show the address without it
                clean = request.url.remove_query_params("token")
                response = RedirectResponse(str(clean), status_code=303, headers=HEADERS)
                response.set_cookie(COOKIE, self.token, httponly=True, samesite="strict")
                return await response(scope, receive, send)
        if not is_owner(request):
            client = request.client.host if request.client else "?"
            if not self.limiter.allow(client):
                return await error_response(request, 429, "rate")(scope, receive, send)

        async def with_headers(message):
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [h for h in self.headers if h[0] not in present]
            await send(message)

        await self.app(scope, receive, with_headers)


# --- bounds ------------------------------------------------------------------------------------------


def check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise StudioError(422, "seed", top=MAX_SEED)
    return seed


def check_truncation(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 2:
        raise StudioError(422, "truncation")
    return float(value)


def check_count(count) -> int:
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
        raise StudioError(422, "count", top=MAX_COUNT)
    return count


def read_upload_image(data: bytes):
    """An uploaded image, checked: size, type by content (not by name), pixel count before decoding."""
    import io
    import warnings

    from PIL import Image

    if len(data) > MAX_UPLOAD_MB * 1024 * 1024:
        raise StudioError(413, "too_big", size=len(data) / 1024 / 1024, top=MAX_UPLOAD_MB)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.format not in IMAGE_FORMATS:
                raise StudioError(415, "not_image")
            pixels = image.width * image.height
            if pixels > MAX_UPLOAD_PIXELS:
                raise StudioError(413, "too_many_pixels", pixels=pixels, top=MAX_UPLOAD_PIXELS)
            image.load()
    except StudioError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise StudioError(413, "too_many_pixels", pixels=0, top=MAX_UPLOAD_PIXELS) from None
    except Exception:  # Pillow's many ways of saying "not an image"
        raise StudioError(415, "not_image") from None
    return image
