"""Reading a request body: the one place that does it, within a size limit, inflating it ourselves.

The server runs with aiohttp's ``auto_decompress`` off (api/app.py). aiohttp 3.14 would
otherwise inflate a ``Content-Encoding: gzip`` body in its parser, and once a handler has
answered it drains the unread rest of the body (its "lingering" read, up to 10 s) through that
same inflater: a 250 KB gzip bomb got its 413 (or 404, or 401) at once, then aiohttp inflated
its 250 MB on the event loop only to throw it away, stalling every request. Here the raw bytes
are read only when a handler asks (after the token and the caller are known), the rest is
drained raw, and inflation stops at the limit: the work per request is bounded by the limit,
whatever the sender sends.

- identity (no ``Content-Encoding``), ``gzip`` / ``x-gzip`` and ``deflate`` (zlib, or raw deflate
  as some clients send it) are read; any other coding is a 415 ``UNSUPPORTED_CONTENT_ENCODING``
  naming what is accepted.
- the limit holds for the bytes as sent and as inflated: over it, 413 ``PAYLOAD_TOO_LARGE``;
  a body that inflates past ``MAX_RATIO`` times its compressed size (beyond ``RATIO_FLOOR``) is a
  413 as well: nothing an alert sender writes compresses that well, a bomb does (about 1000:1).
- a body that is not what its coding says is a 400 ``INVALID_CONTENT_ENCODING``.
"""

from __future__ import annotations

import zlib

from aiohttp import web

from engine.errors import MonodutyError, PayloadTooLarge

ACCEPTED_ENCODINGS = "gzip, deflate"
# Deflate's best is about 1032:1; JSON of a thousand near-identical alerts compresses about 110:1.
MAX_RATIO = 200
# Small bodies may compress as well as they like: their inflation costs nothing.
RATIO_FLOOR = 64 * 1024
# Bytes of inflated output per step, so the ratio is checked as inflation goes.
STEP = 64 * 1024


class UnsupportedEncoding(MonodutyError):
    status = 415
    code = "UNSUPPORTED_CONTENT_ENCODING"

    def __init__(self, coding: str) -> None:
        super().__init__(f"Content-Encoding {coding!r} is not accepted; send {ACCEPTED_ENCODINGS} or none")
        self.headers = {"Accept-Encoding": ACCEPTED_ENCODINGS}


class InvalidEncoding(MonodutyError):
    status = 400
    code = "INVALID_CONTENT_ENCODING"


def _codings(request: web.Request) -> list[str]:
    """The codings applied to the body, outermost last; identity dropped."""
    header = request.headers.get("Content-Encoding", "")
    codings = [c.strip().lower() for c in header.split(",") if c.strip()]
    return [c for c in codings if c != "identity"]


class _Inflater:
    """Incremental gzip/deflate inflation that never produces more than ``limit`` bytes."""

    def __init__(self, coding: str, limit: int) -> None:
        self.coding = "gzip" if coding in ("gzip", "x-gzip") else coding
        self.limit = limit
        self.consumed = 0
        self.output: list[bytes] = []
        self.size = 0
        self._inflater: zlib._Decompress | None = None

    def _new(self, first: int) -> zlib._Decompress:
        if self.coding == "gzip":
            return zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        # RFC 9110's deflate is the zlib format; some clients send a raw deflate stream instead
        # (no zlib header: its first byte's low nibble is not 8), as aiohttp also tolerates.
        return zlib.decompressobj(wbits=zlib.MAX_WBITS if first & 0x0F == 8 else -zlib.MAX_WBITS)

    def feed(self, data: bytes) -> None:
        self.consumed += len(data)
        while data:
            if self._inflater is None:
                self._inflater = self._new(data[0])
            elif self._inflater.eof:
                # gzip allows several members one after another; deflate has one stream.
                if self.coding != "gzip":
                    raise InvalidEncoding("request body has data after the end of its deflate stream")
                self._inflater = self._new(data[0])
            data = self._step(self._inflater, data)

    def _step(self, inflater: zlib._Decompress, data: bytes) -> bytes:
        """Inflate ``data`` in bounded steps; answer what is left over after the stream's end."""
        while data and not inflater.eof:
            budget = min(self.limit + 1 - self.size, STEP)
            try:
                chunk = inflater.decompress(data, budget)
            except zlib.error:
                raise InvalidEncoding(f"request body is not valid {self.coding} data") from None
            self._add(chunk)
            data = inflater.unconsumed_tail
            if not chunk and data:  # no progress with input left: cannot happen, but never spin
                raise InvalidEncoding(f"request body is not valid {self.coding} data")
        return inflater.unused_data if inflater.eof else b""

    def _add(self, chunk: bytes) -> None:
        self.output.append(chunk)
        self.size += len(chunk)
        if self.size > self.limit:
            raise PayloadTooLarge(self.limit)
        if self.size > RATIO_FLOOR and self.size > MAX_RATIO * self.consumed:
            raise MonodutyError(
                f"request body inflates more than {MAX_RATIO} times its compressed size",
                code=PayloadTooLarge.code,
                status=PayloadTooLarge.status,
            )

    def finish(self) -> bytes:
        if self._inflater is None:
            return b""  # an empty body, whatever its coding says
        if not self._inflater.eof:
            raise InvalidEncoding(f"request body ends inside its {self.coding} data")
        return b"".join(self.output)


async def read_body(request: web.Request, limit: int) -> bytes:
    """The request's body, inflated if it was sent compressed, or 413/415/400 (seed's format).

    Raw bytes are read in pieces as they arrive and inflated as they come, so neither reading
    nor inflating ever goes past ``limit``; what the sender sends beyond that is never inflated.
    """
    codings = _codings(request)
    if len(codings) > 1:
        raise UnsupportedEncoding(", ".join(codings))
    coding = codings[0] if codings else None
    if coding is not None and coding not in ("gzip", "x-gzip", "deflate"):
        raise UnsupportedEncoding(coding)
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(limit)
    inflater = _Inflater(coding, limit) if coding else None
    # read(n) answers what has arrived so far, up to n bytes: a body that comes in several
    # pieces (anything but a small one on a fast link) needs a loop, or it is silently cut.
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(min(limit + 1 - size, STEP)):
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(limit)
        if inflater is not None:
            inflater.feed(chunk)
        else:
            chunks.append(chunk)
    return inflater.finish() if inflater is not None else b"".join(chunks)
