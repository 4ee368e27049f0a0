"""Schemathesis checks of the superapp API's own promises, loaded by
scripts/api-fuzz.sh (SCHEMATHESIS_HOOKS)."""

import json

import schemathesis


@schemathesis.check
def error_is_json(ctx, response, case):
    """Every 4xx and 5xx answer is `{"error": {"code", "message"}}` as JSON."""
    if response.status_code < 400:
        return None
    kind = ",".join(response.headers.get("content-type", []))
    if not kind.startswith("application/json"):
        raise AssertionError(f"{response.status_code} with content type {kind!r}, not JSON")
    try:
        body = json.loads(response.content)
    except ValueError as e:
        raise AssertionError(f"{response.status_code} with a body that is not JSON: {e}")
    error = body.get("error") if isinstance(body, dict) else None
    if not (
        isinstance(error, dict)
        and isinstance(error.get("code"), str)
        and isinstance(error.get("message"), str)
        and error["message"]
    ):
        raise AssertionError(f"{response.status_code} without an error code and message: {body!r}")
    # The framework's own messages begin so; the API's never do (a request
    # may echo anything further in).
    if error["message"].startswith("Failed to"):
        raise AssertionError(f"a framework's wording reached the client: {error['message']!r}")
    return None
