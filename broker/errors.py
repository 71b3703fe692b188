"""Errors the core raises; each carries the AMQP reply code front ends translate from."""

from __future__ import annotations


class BrokerError(Exception):
    """A refused operation; ``code`` is the AMQP 0-9-1 reply code."""

    code = 541

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class AccessRefused(BrokerError):
    code = 403


class NotFound(BrokerError):
    code = 404


class ResourceLocked(BrokerError):
    code = 405


class PreconditionFailed(BrokerError):
    code = 406


class NotAllowed(BrokerError):
    code = 530
