"""The read side's exceptions, one tree rooted at `SubscribeError`.

    SubscribeError
    ├── InvalidCursor     a cursor that is not null, "now" or a decimal seq (400)
    ├── NotAcceptable     an `Accept` header no renderer satisfies (406)
    └── StreamBroken      the table lacks rows the delivery rule needs (a bug or
                          a deleted live run); the stream ends, the client resumes

The routes translate the first two into the contract's error shape; the
third ends one viewer's stream and is logged.
"""

from __future__ import annotations

__all__ = ["InvalidCursor", "NotAcceptable", "StreamBroken", "SubscribeError"]


class SubscribeError(Exception):
    """Base of every error the read side raises on purpose."""


class InvalidCursor(SubscribeError):
    pass


class NotAcceptable(SubscribeError):
    pass


class StreamBroken(SubscribeError):
    pass
