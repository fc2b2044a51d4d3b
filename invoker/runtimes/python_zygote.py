"""A pre-initialised Python runtime that forks execution environments on request (the zygote).

Started once per invoker as ``python3 python_zygote.py FD``, where FD is one end of a
SOCK_SEQPACKET socket pair. It imports the built-in runtime (and everything that imports) once;
each environment is then a fork that only has to import the function's own code, which turns a
~70 ms interpreter start into a few milliseconds (the SOCK approach, ARCHITECTURE.md).

SnapStart: a zygote can also initialise one function's module before it forks (its module-level
code then runs once, here, and every environment starts with it done):
  invoker -> zygote  {"preload": {"env": {...}, "cwd": "...", "handler": "app.handler"}}
  zygote  -> invoker {"preloaded": true} or {"preloaded": false, "error": "..."}

Protocol, one datagram each:
  invoker -> zygote  {"env": {...}, "cwd": "...", "sandbox": {"uid": U, "gid": G, "limits": {...}}}
                     with the output pipe's fd (SCM_RIGHTS), and optionally the runtime channel's
                     socket as a second fd; "sandbox" (optional) makes the child drop root before
                     it touches the function's code (the zygote itself only ever loads the runtime)
  zygote  -> invoker {"pid": N}                     the environment's process
  zygote  -> invoker {"exit": N, "code": C}         it ended (C < 0: killed by signal -C)
  zygote  -> invoker {"ready": true}                once, at start

Standard library only, like the runtime it preloads.
"""

import array
import atexit
import ctypes
import ctypes.util
import importlib.util
import json
import os
import select
import signal
import socket
import sys
import time
import traceback

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)  # started by path, so it is there already; the runtime takes it off for user code
from kambda_runtime import bootstrap  # noqa: E402

_spec = importlib.util.spec_from_file_location("kambda_privileges", os.path.join(_HERE, "privileges.py"))
privileges = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(privileges)

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_PR_SET_PDEATHSIG = 1


def _send(ctl, message):
    ctl.send(json.dumps(message).encode())


def _receive(ctl):
    fds = array.array("i")
    data, ancdata, _, _ = ctl.recvmsg(1 << 20, socket.CMSG_SPACE(fds.itemsize))
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
    return data, list(fds)


def _run_child(request, out_fd, channel_fd=None):
    """In the forked child: become the environment, run the runtime, never return."""
    code = 1
    try:
        os.setpgid(0, 0)
        sandbox = request.get("sandbox")
        if sandbox and os.geteuid() == 0:
            privileges.drop(sandbox["uid"], sandbox["gid"], sandbox["limits"], sandbox.get("mask"))
        else:
            _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        os.dup2(out_fd, 1)
        os.dup2(out_fd, 2)
        os.close(out_fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        if channel_fd is not None:
            os.environ["_KAMBDA_RUNTIME_FD"] = str(channel_fd)
        time.tzset()
        if "random" in sys.modules:
            sys.modules["random"].seed()  # every fork would otherwise draw the same numbers
        bootstrap.main()
        code = 0
    except SystemExit as exc:
        if exc.code is None:
            code = 0
        elif isinstance(exc.code, int):
            code = exc.code
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        try:
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code & 0xFF)


def _preload(request):
    """SnapStart: run the function's initialisation here, once, with the function's environment."""
    os.environ.clear()
    os.environ.update(request["env"])
    time.tzset()
    os.chdir(request["cwd"])
    sys.path.insert(0, request["cwd"])
    try:
        bootstrap.load_handler(request["handler"])
    except bootstrap.InitError as exc:
        return {"preloaded": False, "error": json.dumps(exc.error)}
    except BaseException as exc:  # the environments will report it when they import on their own
        return {"preloaded": False, "error": repr(exc)}
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    return {"preloaded": True}


def main():
    ctl = socket.socket(fileno=int(sys.argv[1]))
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    _send(ctl, {"ready": True})
    while True:
        try:
            ready, _, _ = select.select([ctl, wake_r], [], [])
        except InterruptedError:
            continue
        if wake_r in ready:
            try:
                while os.read(wake_r, 4096):
                    pass
            except BlockingIOError:
                pass
            while True:
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                _send(ctl, {"exit": pid, "code": os.waitstatus_to_exitcode(status)})
        if ctl in ready:
            data, fds = _receive(ctl)
            if not data:
                os._exit(0)  # the invoker is gone
            request = json.loads(data)
            if "preload" in request:
                _send(ctl, _preload(request["preload"]))
                continue
            pid = os.fork()
            if pid == 0:
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                ctl.close()
                os.close(wake_r)
                os.close(wake_w)
                for extra in fds[2:]:
                    os.close(extra)
                _run_child(request, fds[0], fds[1] if len(fds) > 1 else None)
            for fd in fds:
                os.close(fd)
            _send(ctl, {"pid": pid})


if __name__ == "__main__":
    main()
