"""The read side's exceptions: a subtree of `broker.errors`, so the one table answers them.

BrokerError
└── SubscribeError
    ├── InvalidCursor     invalid_cursor   400  not null, "now" or a decimal seq
    ├── NotAcceptable     not_acceptable   406  an `Accept` no renderer satisfies
    └── StreamBroken      stream_broken    500  the table lacks rows the delivery rule
                                                needs (a bug or a deleted live run); the
                                                stream ends, the client resumes
"""

from __future__ import annotations

from broker.errors import BrokerError

__all__ = ["InvalidCursor", "NotAcceptable", "StreamBroken", "SubscribeError"]


class SubscribeError(BrokerError):
    """Base of every error the read side raises on purpose."""


class InvalidCursor(SubscribeError):
    code = "invalid_cursor"
    status = 400


class NotAcceptable(SubscribeError):
    code = "not_acceptable"
    status = 406


class StreamBroken(SubscribeError):
    code = "stream_broken"
    status = 500
