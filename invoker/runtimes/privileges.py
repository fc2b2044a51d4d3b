"""Dropping root in an environment's process before it runs a function's code (the sandbox).

Used in two places: the zygote's forked child (python_zygote.py loads this file by path, so it is
standard library only) and ``preexec_fn`` of an exec'd runtime (invoker/environment.py). Order
matters: limits first (lowering them needs no privilege, raising the hard limit does), then the
groups, the gid and the uid (all three of real, effective and saved, so nothing can be regained),
then no_new_privs (a setuid binary cannot give root back), then the parent-death signal, which a
change of credentials clears.
"""

import ctypes
import ctypes.util
import os
import resource
import signal

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4
_PR_SET_NO_NEW_PRIVS = 38
_CLONE_NEWNS = 0x00020000
_MS_NOSUID, _MS_NODEV, _MS_BIND, _MS_REC, _MS_PRIVATE = 2, 4, 4096, 16384, 1 << 18


def _mount(source, target, fstype, flags, data=None):
    args = [None if v is None else v.encode() for v in (source, target, fstype)]
    if _libc.mount(args[0], args[1], args[2], ctypes.c_ulong(flags), None if data is None else data.encode()) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} on {target}: {os.strerror(err)}")


def mask(hide, keep):
    """In a mount namespace of this process's own, cover ``hide`` (a private directory such as
    /root) with an empty tmpfs that anyone may traverse, and bind back only the ``keep`` paths under
    it (the interpreter the runtime needs). The rest of ``hide`` becomes invisible."""
    if _libc.unshare(_CLONE_NEWNS) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare(CLONE_NEWNS): {os.strerror(err)}")
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE)
    # Opened in the new namespace (a bind mount's source must be in the target's namespace) and
    # before the tmpfs covers them.
    fds = [os.open(path, os.O_PATH | os.O_DIRECTORY) for path in keep]
    _mount("tmpfs", hide, "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=0711,size=1m")
    for path, fd in zip(keep, fds, strict=True):
        os.makedirs(path, exist_ok=True)
        _mount(f"/proc/self/fd/{fd}", path, None, _MS_BIND | _MS_REC)
        os.close(fd)


def drop(uid, gid, limits, masked=None):
    """Become ``uid``/``gid`` with no supplementary groups and no capabilities, under ``limits``.

    ``limits`` maps resource names (``"RLIMIT_NPROC"``) to the soft and hard limit to set;
    ``masked`` ({"hide": dir, "keep": [dirs]}) is applied first (see :func:`mask`)."""
    if masked:
        mask(masked["hide"], masked["keep"])
    for name, value in limits.items():
        resource.setrlimit(getattr(resource, name), (value, value))
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.geteuid() == 0 or os.getegid() == 0:
        raise OSError("could not drop root privileges")
    if _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
    # A change of credentials made the process non-dumpable, which turns its own /proc/self over to
    # root; the function may read its own /proc files (other uids still cannot).
    _libc.prctl(_PR_SET_DUMPABLE, 1, 0, 0, 0)
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
