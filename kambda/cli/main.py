"""The ``kambda`` command: run the platform, deploy and invoke functions, route HTTP to them, read logs, run
state machines (``kambda sfn``: kambda/cli/sfn.py).

Every command but ``up`` talks to the gateway's HTTP API like any other client (the endpoint is
``--endpoint`` or KAMBDA_ENDPOINT, default http://127.0.0.1:8042), signing its requests with SigV4
when AWS credentials are at hand (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or ``--profile`` /
AWS_PROFILE in the shared credentials file). User mistakes end in a one-line error and exit code 1,
never a traceback.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from kambda import codepkg
from kambda.aws import errors
from kambda.cli import sfn
from kambda.settings import state_dir

DEFAULT_ENDPOINT = "http://127.0.0.1:8042"
API = "/2015-03-31/functions"

#: Lines are never broken at the terminal's width (a piped line stays one line).
out = Console(soft_wrap=True)

if TYPE_CHECKING:
    from botocore.credentials import Credentials


class CliError(Exception):
    pass


def find_credentials(profile: str | None, environ: dict[str, str]) -> Credentials | None:
    """Credentials from the environment, else from the shared credentials file; never from the network."""
    from botocore.credentials import EnvProvider, SharedCredentialProvider  # botocore takes ~0.1 s to import

    if not profile:
        found = EnvProvider(environ).load()
        if found is not None:
            return found
    path = environ.get("AWS_SHARED_CREDENTIALS_FILE", os.path.expanduser("~/.aws/credentials"))
    found = SharedCredentialProvider(path, profile or environ.get("AWS_PROFILE", "default")).load()
    if found is None and profile:
        raise CliError(f"no credentials for profile {profile!r} in {path}")
    return found


class Client:
    def __init__(self, endpoint: str, credentials: Credentials | None = None, region: str = "us-east-1") -> None:
        self.endpoint = endpoint.rstrip("/")
        self._credentials = credentials
        self.region = region

    def _signed(self, method: str, path: str, body: bytes | None, headers: dict[str, str],
                service: str = "lambda") -> urllib.request.Request:
        url = self.endpoint + path
        if self._credentials is not None:
            from botocore.auth import SigV4Auth
            from botocore.awsrequest import AWSRequest

            signing = AWSRequest(method=method, url=url, data=body or b"", headers=headers)
            SigV4Auth(self._credentials.get_frozen_credentials(), service, self.region).add_auth(signing)
            headers = dict(signing.headers.items())
        return urllib.request.Request(url, data=body, method=method, headers=headers)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None, timeout: float = 960,
                service: str = "lambda") -> tuple[int, dict[str, str], bytes]:
        """``service``: the signing name in the SigV4 scope (``states`` for Step Functions)."""
        req = self._signed(method, path, body, headers or {}, service)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            raise CliError(_aws_error(exc)) from None
        except urllib.error.URLError as exc:
            raise CliError(f"cannot reach kambda at {self.endpoint} ({exc.reason}): is `kambda up` running?"
                           ) from None

    def json(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        _, _, raw = self.request(method, path, data, {"Content-Type": "application/json"})
        return json.loads(raw) if raw else None

    def stream(self, path: str) -> Any:
        try:
            return urllib.request.urlopen(self._signed("GET", path, None, {}), timeout=None)
        except urllib.error.HTTPError as exc:
            raise CliError(_aws_error(exc)) from None
        except urllib.error.URLError as exc:
            raise CliError(f"cannot reach kambda at {self.endpoint} ({exc.reason})") from None


def _aws_error(exc: urllib.error.HTTPError) -> str:
    code = exc.headers.get("x-amzn-ErrorType", f"HTTP {exc.code}")
    try:
        body = json.loads(exc.read())
        message = body.get("message") or body.get("Message") or ""
    except ValueError:
        message = ""
    return f"{code}: {message}" if message else code


def _quote(name: str) -> str:
    return urllib.parse.quote(name, safe="")


# -- commands --------------------------------------------------------------------------------

def cmd_up(args: argparse.Namespace) -> int:
    from kambda.cli.up import UpOptions
    from kambda.cli.up import main as up_main

    routes = Path(args.routes).expanduser() if args.routes else None
    if routes is not None and not routes.is_file():
        raise CliError(f"--routes {args.routes}: no such file")
    options = UpOptions(host=args.host, port=args.port, state_dir=Path(args.state_dir).expanduser(),
                        scale_to_zero_after=args.scale_to_zero_after, routes_file=routes,
                        credentials=Path(args.credentials).expanduser() if args.credentials else None,
                        insecure=args.insecure, workers=args.workers, nats_port=args.nats_port)
    return up_main(options)


def _package(path: Path) -> bytes:
    if path.is_dir():
        return codepkg.make_zip(path)
    if path.is_file():
        return path.read_bytes()
    raise CliError(f"{path} is neither a directory nor a zip file")


def _parse_env(pairs: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CliError(f"--env takes KEY=VALUE, not {pair!r}")
        env[key] = value
    return env


def missing_handler_module(package: bytes, handler: str, runtime: str) -> str | None:
    """The file a handler's module should be in, when the package has no such file (None: it has,
    or kambda cannot tell for this runtime or package)."""
    module, _, _ = handler.rpartition(".")
    if not module:
        return None
    if runtime.startswith("python"):
        base = module.replace(".", "/")
        candidates = [f"{base}.py", f"{base}/__init__.py"]
    elif runtime.startswith("nodejs"):
        candidates = [f"{module}{ext}" for ext in (".js", ".mjs", ".cjs")]
    else:
        return None
    try:
        with zipfile.ZipFile(io.BytesIO(package)) as zf:
            names = set(zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return None  # the gateway says what is wrong with it
    return None if any(c in names for c in candidates) else candidates[0]


#: A package larger than this gets a progress line while it uploads.
PROGRESS_BYTES = 4 * 1024 * 1024


def cmd_deploy(args: argparse.Namespace, client: Client) -> int:
    path = Path(args.path)
    name = args.name or (path.stem if path.is_file() else path.resolve().name)
    package = _package(path)
    zip_b64 = base64.b64encode(package).decode()
    settings: dict[str, Any] = {}
    if args.handler:
        settings["Handler"] = args.handler
    if args.runtime:
        settings["Runtime"] = args.runtime
    if args.timeout:
        settings["Timeout"] = args.timeout
    if args.memory:
        settings["MemorySize"] = args.memory
    if args.description is not None:
        settings["Description"] = args.description
    if args.env:
        settings["Environment"] = {"Variables": _parse_env(args.env)}
    try:
        client.json("GET", f"{API}/{_quote(name)}/configuration")
        exists = True
    except CliError as exc:
        if not str(exc).startswith("ResourceNotFoundException"):
            raise
        exists = False
    uploading = len(package) > PROGRESS_BYTES
    if uploading:
        print(f"kambda: uploading {name} ({len(package) / 1e6:.1f} MB) ...", file=sys.stderr, flush=True)
    started = time.monotonic()
    if exists:
        # Validate everything before changing anything: the package first (a dry run changes
        # nothing), then the settings (a refused update changes nothing), and only then the code.
        client.json("PUT", f"{API}/{_quote(name)}/code", {"ZipFile": zip_b64, "DryRun": True})
        if settings:
            client.json("PUT", f"{API}/{_quote(name)}/configuration", settings)
        config = client.json("PUT", f"{API}/{_quote(name)}/code", {"ZipFile": zip_b64})
        verb = "updated"
    else:
        body = {"FunctionName": name, "Runtime": "python3.12", "Handler": "app.handler",
                "Role": "arn:aws:iam::000000000000:role/kambda", **settings, "Code": {"ZipFile": zip_b64}}
        config = client.json("POST", API, body)
        verb = "created"
    if uploading:
        print(f"kambda: uploaded {len(package) / 1e6:.1f} MB in {time.monotonic() - started:.1f} s",
              file=sys.stderr, flush=True)
    missing = missing_handler_module(package, config["Handler"], config["Runtime"])
    if missing is not None:
        print(f"kambda: warning: the package has no {missing} for handler {config['Handler']}; "
              "calls will fail with Runtime.ImportModuleError (--handler module.function)", file=sys.stderr)
    out.print(f"[green]{verb}[/green] {config['FunctionName']} ({config['Runtime']}, {config['Handler']}, "
              f"{config['CodeSize']} bytes, sha256 {config['CodeSha256']})")
    return 0


def cmd_invoke(args: argparse.Namespace, client: Client) -> int:
    payload = args.payload or "{}"
    if payload.startswith("@"):
        try:
            payload = Path(payload[1:]).read_text()
        except OSError as exc:
            raise CliError(f"cannot read {payload[1:]}: {exc.strerror}") from None
    headers = {"Content-Type": "application/json", "X-Amz-Log-Type": "Tail" if args.log else "None"}
    if args.event:
        headers["X-Amz-Invocation-Type"] = "Event"
    _, response_headers, body = client.request("POST", f"{API}/{_quote(args.name)}/invocations",
                                               payload.encode(), headers)
    if args.log and response_headers.get("X-Amz-Log-Result"):
        sys.stderr.write(base64.b64decode(response_headers["X-Amz-Log-Result"]).decode(errors="replace"))
    if args.event:
        out.print("queued")
        return 0
    sys.stdout.write(body.decode(errors="replace") + "\n")
    return 1 if response_headers.get("X-Amz-Function-Error") else 0


def print_table(args: argparse.Namespace, headers: tuple[str, ...], rows: Sequence[Sequence[str]],
                records: list[Any]) -> None:
    """A table for a terminal; plain aligned columns when piped (never wrapped or cut to a width);
    ``--output json``: the records themselves, one JSON document."""
    if getattr(args, "output", "table") == "json":
        sys.stdout.write(json.dumps(records, indent=2) + "\n")
    elif sys.stdout.isatty():
        table = Table(*headers)
        for row in rows:
            table.add_row(*row)
        out.print(table)
    else:
        widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]
        for line in (headers, *rows):
            sys.stdout.write("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
                             + "\n")


def cmd_ls(args: argparse.Namespace, client: Client) -> int:
    functions: list[dict[str, Any]] = []
    marker = ""
    while True:
        query = "?MaxItems=50" + (f"&Marker={_quote(marker)}" if marker else "")
        page = client.json("GET", f"{API}/{query}")
        functions.extend(page["Functions"])
        marker = page.get("NextMarker") or ""
        if not marker:
            break
    print_table(args, ("Name", "Runtime", "Handler", "Memory", "Timeout", "Last modified"),
                [(f["FunctionName"], f["Runtime"], f["Handler"], f"{f['MemorySize']} MB", f"{f['Timeout']} s",
                  f["LastModified"]) for f in functions], functions)
    return 0


def cmd_rm(args: argparse.Namespace, client: Client) -> int:
    client.request("DELETE", f"{API}/{_quote(args.name)}")
    out.print(f"deleted {args.name}")
    return 0


def cmd_logs(args: argparse.Namespace, client: Client) -> int:
    query = f"?limit={args.limit}" + ("&follow=true" if args.follow else "")
    with client.stream(f"/_kambda/v1/functions/{_quote(args.name)}/logs{query}") as response:
        for raw in response:
            record = json.loads(raw)
            sys.stdout.write(record["text"])
            sys.stdout.flush()
    return 0


def cmd_env(args: argparse.Namespace, client: Client) -> int:
    """The exports that point boto3, the AWS CLI and SAM at this kambda (``eval "$(kambda env)"``)."""
    lines = [f"export AWS_ENDPOINT_URL={client.endpoint}", f"export AWS_DEFAULT_REGION={args.region}"]
    if not (os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE")):
        # Unsigned mode (the default) takes any keys; AWS's clients want some to sign with.
        lines += ["export AWS_ACCESS_KEY_ID=kambda", "export AWS_SECRET_ACCESS_KEY=kambda"]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def cmd_status(args: argparse.Namespace, client: Client) -> int:
    status = client.json("GET", f"/_kambda/v1/functions/{_quote(args.name)}")
    if sys.stdout.isatty():
        out.print_json(data=status)
    else:
        sys.stdout.write(json.dumps(status, indent=2) + "\n")
    return 0


def cmd_publish(args: argparse.Namespace, client: Client) -> int:
    body = {"Description": args.description} if args.description is not None else {}
    version = client.json("POST", f"{API}/{_quote(args.name)}/versions", body)
    out.print(f"{args.name} version {version['Version']} (sha256 {version['CodeSha256']})")
    return 0


def _weights(pairs: list[str]) -> dict[str, float]:
    weights: dict[str, float] = {}
    for pair in pairs:
        version, sep, weight = pair.partition("=")
        try:
            weights[version] = float(weight)
        except ValueError:
            sep = ""
        if not sep:
            raise CliError(f"--weight takes VERSION=WEIGHT (e.g. 2=0.1), not {pair!r}")
    return weights


def cmd_alias(args: argparse.Namespace, client: Client) -> int:
    base = f"{API}/{_quote(args.name)}/aliases"
    if args.action == "ls":
        aliases = client.json("GET", base)["Aliases"]
        rows = []
        for alias in aliases:
            weights = alias.get("RoutingConfig", {}).get("AdditionalVersionWeights", {})
            rows.append((alias["Name"], alias["FunctionVersion"],
                         ", ".join(f"{v}: {w:.0%}" for v, w in weights.items()), alias["Description"]))
        print_table(args, ("Alias", "Version", "Additional versions", "Description"), rows, aliases)
        return 0
    if not args.alias:
        raise CliError(f"kambda alias {args.action} needs an alias name")
    if args.action == "rm":
        client.request("DELETE", f"{base}/{_quote(args.alias)}")
        out.print(f"deleted alias {args.name}:{args.alias}")
        return 0
    if not args.version:
        raise CliError("kambda alias set needs the version the alias points to")
    body: dict[str, Any] = {"FunctionVersion": args.version,
                            "RoutingConfig": {"AdditionalVersionWeights": _weights(args.weight)}}
    try:
        alias = client.json("PUT", f"{base}/{_quote(args.alias)}", body)
    except CliError as exc:
        if not str(exc).startswith("ResourceNotFoundException: Alias not found"):
            raise
        alias = client.json("POST", base, {**body, "Name": args.alias})
    weights = alias.get("RoutingConfig", {}).get("AdditionalVersionWeights", {})
    split = "".join(f", {w:.0%} to version {v}" for v, w in weights.items())
    out.print(f"{args.name}:{alias['Name']} -> version {alias['FunctionVersion']}{split}")
    return 0


def cmd_top(args: argparse.Namespace, client: Client) -> int:
    from kambda.cli import top

    try:
        top.run(client.endpoint, args.interval, iterations=1 if args.once else None,
                fetch=lambda _: top.parse(client.request("GET", "/metrics", timeout=10)[2].decode(), time.monotonic()))
    except OSError as exc:
        raise CliError(f"cannot read metrics from {client.endpoint}: {exc}") from None
    return 0


ROUTES = "/_kambda/v1/http/routes"


def cmd_route(args: argparse.Namespace, client: Client) -> int:
    if args.route_command == "add":
        body: dict[str, Any] = {"RouteKey": args.route_key, "FunctionName": args.function,
                                "PayloadFormatVersion": args.payload_format}
        if args.qualifier:
            body["Qualifier"] = args.qualifier
        route = client.json("POST", ROUTES, body)
        out.print(f"[green]added[/green] {route['RouteKey']} -> {route['Target']} "
                  f"(payload {route['PayloadFormatVersion']}, id {route['RouteId']})")
        return 0
    routes = client.json("GET", ROUTES)["Items"]
    if args.route_command == "ls":
        print_table(args, ("Route", "Function", "Qualifier", "Payload", "Id"),
                    [(r["RouteKey"], r["FunctionName"], r["Qualifier"] or "", r["PayloadFormatVersion"], r["RouteId"])
                     for r in routes], routes)
        return 0
    found = [r for r in routes if args.route in (r["RouteKey"], r["RouteId"])]
    if not found:
        raise CliError(f"no route {args.route!r} (see `kambda route ls`)")
    client.request("DELETE", f"{ROUTES}/{found[0]['RouteId']}")
    out.print(f"removed {found[0]['RouteKey']}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kambda", description="Self-hosted AWS-Lambda-compatible functions.")
    p.add_argument("--version", action="version", version=f"kambda {_version()}")
    p.add_argument("--endpoint", default=os.environ.get("KAMBDA_ENDPOINT", DEFAULT_ENDPOINT),
                   help="the gateway's URL (env KAMBDA_ENDPOINT)")
    p.add_argument("--profile", default=None,
                   help="sign requests with this profile of the shared AWS credentials file (env AWS_PROFILE)")
    p.add_argument("--region", default=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
                   or "us-east-1", help="the region in the signature's scope (env AWS_REGION)")
    sub = p.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run NATS, the controller and the gateway on this machine")
    up.add_argument("--host", default=os.environ.get("KAMBDA_HOST", "127.0.0.1"),
                    help="the address the gateway listens on (env KAMBDA_HOST, default 127.0.0.1)")
    up.add_argument("--port", type=int, default=int(os.environ.get("KAMBDA_PORT", "8042")),
                    help="the gateway's port, 0 for any free one (env KAMBDA_PORT, default 8042)")
    up.add_argument("--state-dir", default=str(state_dir(os.environ)), metavar="DIR",
                    help="functions, queues and logs live here; one kambda up at a time "
                         "(env KAMBDA_STATE_DIR, default ~/.kambda)")
    up.add_argument("--scale-to-zero-after", type=float, default=None, metavar="SECONDS",
                    help="stop environments idle this long (env KAMBDA_SCALE_TO_ZERO_AFTER, default 300)")
    up.add_argument("--routes", default=os.environ.get("KAMBDA_ROUTES_FILE") or None, metavar="FILE",
                    help="HTTP API routes to add at start, YAML or JSON (env KAMBDA_ROUTES_FILE)")
    up.add_argument("--credentials", metavar="FILE", default=None,
                    help="require SigV4 signatures by these credentials (env KAMBDA_CREDENTIALS_FILE)")
    up.add_argument("--workers", type=int, default=None, metavar="N",
                    help="worker replicas (async invokes, event routing, event sources); default KAMBDA_WORKERS or 1")
    up.add_argument("--insecure", action="store_true",
                    help="with no credentials, serve unsigned requests from any address (env KAMBDA_INSECURE)")
    up.add_argument("--nats-port", type=int, default=None, metavar="PORT",
                    help="nats-server's port on 127.0.0.1 (default: any free one; the URL is printed and "
                         "written to STATE_DIR/nats.url)")

    deploy = sub.add_parser("deploy", help="create or update a function from a directory or a zip")
    deploy.add_argument("path")
    deploy.add_argument("--name")
    deploy.add_argument("--handler", help="module.function (default app.handler on create)")
    deploy.add_argument("--runtime", help="default python3.12 on create")
    deploy.add_argument("--timeout", type=int)
    deploy.add_argument("--memory", type=int)
    deploy.add_argument("--description")
    deploy.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")

    invoke = sub.add_parser("invoke", help="invoke a function and print its result")
    invoke.add_argument("name")
    invoke.add_argument("--payload", help="JSON, or @file")
    invoke.add_argument("--log", action="store_true", help="print the run's log tail on stderr")
    invoke.add_argument("--event", action="store_true", help="invoke asynchronously")

    listing = argparse.ArgumentParser(add_help=False)
    listing.add_argument("--output", choices=("table", "json"), default="table",
                         help="a table (plain columns when piped), or the records as JSON")
    sub.add_parser("ls", help="list functions", parents=[listing])
    sub.add_parser("env", help="print the exports that point boto3 and the AWS CLI here: eval \"$(kambda env)\"")
    rm = sub.add_parser("rm", help="delete a function")
    rm.add_argument("name")
    logs = sub.add_parser("logs", help="show a function's recent logs")
    logs.add_argument("name")
    logs.add_argument("-f", "--follow", action="store_true")
    logs.add_argument("--limit", type=int, default=100)
    status = sub.add_parser("status", help="environments, busy and queued requests of a function")
    status.add_argument("name")
    publish = sub.add_parser("publish", help="publish $LATEST as a new immutable version")
    publish.add_argument("name")
    publish.add_argument("--description")
    alias = sub.add_parser("alias", help="point an alias at a version (set), list (ls) or delete (rm) aliases",
                           parents=[listing])
    alias.add_argument("action", choices=("set", "ls", "rm"))
    alias.add_argument("name")
    alias.add_argument("alias", nargs="?")
    alias.add_argument("version", nargs="?")
    alias.add_argument("--weight", action="append", default=[], metavar="VERSION=WEIGHT",
                       help="send this share of the calls (0 <= WEIGHT < 1) to another version")
    top = sub.add_parser("top", help="live per-function rate, errors, latency, environments and queue")
    top.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes")
    top.add_argument("--once", action="store_true", help="one refresh, printed, then exit")
    route = sub.add_parser("route", help="HTTP API routes: requests to /http/... invoke functions")
    route_sub = route.add_subparsers(dest="route_command", required=True)
    add = route_sub.add_parser("add", help="route requests to a function, e.g. 'GET /users/{id}' users-fn")
    add.add_argument("route_key", help="'$default' or 'METHOD /path' ({param}, {proxy+}; METHOD may be ANY)")
    add.add_argument("function")
    add.add_argument("--qualifier")
    add.add_argument("--payload-format", choices=("2.0", "1.0"), default="2.0")
    route_sub.add_parser("ls", help="list routes", parents=[listing])
    rm_route = route_sub.add_parser("rm", help="remove a route (by key or id)")
    rm_route.add_argument("route")
    sfn.add_parser(sub, listing)
    return p


COMMANDS = {"deploy": cmd_deploy, "invoke": cmd_invoke, "ls": cmd_ls, "rm": cmd_rm, "logs": cmd_logs,
            "status": cmd_status, "env": cmd_env, "top": cmd_top, "route": cmd_route, "publish": cmd_publish,
            "alias": cmd_alias, "sfn": sfn.cmd_sfn}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kambda")
    except PackageNotFoundError:
        return "unknown (not installed)"


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "up":
            return cmd_up(args)
        client = Client(args.endpoint, find_credentials(args.profile, dict(os.environ)), args.region)
        return COMMANDS[args.command](args, client)
    except (CliError, errors.KambdaError) as exc:
        print(f"kambda: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130

