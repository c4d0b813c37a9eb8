"""Errors as OpenAI's API returns them: a status and `{"error": {"message", "type", "param", "code"}}`.

Every problem with a request is one `APIError` whose message is one sentence naming the problem and
the fix; the app turns it into that JSON body and the access log into one line.
"""

from __future__ import annotations

from typing import Any, Optional

#: OpenAI's error `type` for each status.
ERROR_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 404: "invalid_request_error",
               405: "invalid_request_error", 413: "invalid_request_error", 415: "invalid_request_error",
               422: "invalid_request_error", 429: "rate_limit_error", 499: "invalid_request_error",
               500: "server_error", 503: "server_error"}


class APIError(Exception):
    """A request the server answers with `status` and OpenAI's error JSON.

    Args:
        status: The HTTP status (4xx for the client's mistakes, 5xx for the server's).
        message: One sentence: what was wrong and how to fix it.
        param: The request field at fault, if one is.
        code: OpenAI's machine-readable code (e.g. 'invalid_api_key', 'model_not_found', 'context_length_exceeded').
    """

    def __init__(self, status: int, message: str, param: Optional[str] = None, code: Optional[str] = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        """The JSON body OpenAI's clients parse."""
        return error_body(self.status, self.message, self.param, self.code)


def error_body(status: int, message: str, param: Optional[str] = None, code: Optional[str] = None) -> dict[str, Any]:
    """`{"error": {...}}` for `status`, as OpenAI's API writes it."""
    kind = ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def bad_request(message: str, param: Optional[str] = None, code: Optional[str] = None) -> APIError:
    """A 400 (the request asks for something this server cannot or will not do)."""
    return APIError(400, message, param, code)
