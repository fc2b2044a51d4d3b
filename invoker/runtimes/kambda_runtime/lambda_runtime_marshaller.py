"""Events in, results out, as awslambdaric's lambda_runtime_marshaller.py encodes them."""

import json
import sys

from kambda_runtime.lambda_runtime_exception import FaultException


def _json_default(obj):
    # awslambdaric encodes with simplejson: Decimals become numbers (NaN stays NaN) and bytes
    # nested in a result are decoded as UTF-8. The decimal module is only looked up, never
    # imported: if nobody imported it there can be no Decimal to encode.
    decimal = sys.modules.get("decimal")
    if decimal is not None and isinstance(obj, decimal.Decimal):
        if obj.is_nan():
            return float("nan")
        if obj.is_finite() and obj == obj.to_integral_value():
            return int(obj)
        return float(obj)
    if isinstance(obj, bytes | bytearray):
        return bytes(obj).decode("utf-8")
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


_encoder = json.JSONEncoder(default=_json_default)


def to_json(obj):
    return _encoder.encode(obj)


def unmarshal_event(body, content_type):
    """The event handed to the handler: JSON-decoded unless the parent said it is not JSON."""
    media_type = content_type.split(";", 1)[0].strip().lower() if content_type else "application/json"
    if media_type != "application/json":
        return body
    try:
        return json.loads(body)
    except Exception as e:
        raise FaultException(FaultException.UNMARSHAL_ERROR, f"Unable to unmarshal input: {e}") from None


def marshal_response(response):
    """(body bytes, content type) for a handler's result."""
    if isinstance(response, bytes):
        return response, "application/unknown"
    try:
        return to_json(response).encode("utf-8"), "application/json"
    except Exception as e:
        raise FaultException(FaultException.MARSHAL_ERROR, f"Unable to marshal response: {e}") from None
