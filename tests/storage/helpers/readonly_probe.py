"""Open a Store on a database the process may only read, try a read and a write; print JSON.

argv: DB_PATH_OR_URI
Run as root, the process first drops CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from its effective
set: root ignores file modes otherwise, and a chmod 0444 file would still be writable.
"""

import ctypes
import json
import os
import sys


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def drop_file_override() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    header, data = _Header(0x20080522, 0), (_Data * 2)()  # _LINUX_CAPABILITY_VERSION_3
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget failed")
    data[0].effective &= ~((1 << 1) | (1 << 2))  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")


def main() -> int:
    if os.geteuid() == 0:
        drop_file_override()
    from durableflow.errors import DurableflowError
    from durableflow.storage import NewMessage, Store

    out = {}
    try:
        store = Store(sys.argv[1])
    except Exception as exc:
        print(json.dumps({"open_error": f"{type(exc).__name__}: {exc}"}))
        return 1
    with store:
        try:
            out["counts"] = store.queue_counts()
        except Exception as exc:
            out["read_error"] = f"{type(exc).__name__}: {exc}"
        try:
            store.enqueue(NewMessage("task"))
            out["write"] = "succeeded"
        except Exception as exc:
            out["write_error"] = type(exc).__name__
            out["write_message"] = str(exc)
            out["is_durableflow_error"] = isinstance(exc, DurableflowError)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
