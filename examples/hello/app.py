"""The hello function: deploy with `kambda deploy examples/hello`."""

import os

invocations = 0  # module-level state survives between warm invocations


def handler(event, context):
    global invocations
    invocations += 1
    name = (event or {}).get("name", "world")
    return {
        "message": f"Hello, {name}!",
        "invocations": invocations,
        "function": context.function_name,
        "request_id": context.aws_request_id,
        "runtime": os.environ.get("AWS_EXECUTION_ENV"),
    }
