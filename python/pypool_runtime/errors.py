"""Errors as Go sees them: an exception's type name, message and traceback,
and the detail of a value the codec refused.

format_traceback hides the runtime's own frames (those of the modules that
serve a call: worker, serve, interrupt, startup; aio's and asyncio's above
an async function) and the SIGINT handler's frame at the end of an
interrupt's traceback. The traceback module (and what it imports on its
first use: linecache, tokenize, re, ast) is imported at the first
exception formatted, not at every start (12 to 16 ms), from the
interpreter's own sys.path entries only (stdlib.own_module): a module of
the same name in a --path directory can neither replace it for the
runtime nor break its error replies.
"""

from __future__ import annotations

import _thread  # built in
import sys

from . import codec as codecs
from . import stdlib
from .interrupt import MAIN_THREAD, STATE, Interrupts

TYPE_CHECKING = False
if TYPE_CHECKING:  # Annotations only: importing typing would add milliseconds to every worker start.
    from typing import Any, Dict, Tuple

# The traceback module, imported by traceback_module at the first exception.
_traceback: Any = None

# The modules whose frames sit between Go's call and the user's function (as
# worker.py's did before the runtime was split in modules), or its
# generator's (stream): hidden.
_RUNTIME_MODULES = frozenset(__package__ + "." + name for name in ("worker", "serve", "interrupt", "startup", "stream"))
_AIO_MODULE = __package__ + ".aio"


def traceback_module() -> Any:
    """The traceback module, imported at the first call from the
    interpreter's own entries (stdlib.own_module: a private copy of it if
    the user's code imported a traceback.py of its own first), and, by
    formatting one exception while the imports are guarded, what it
    imports on its first use (linecache, tokenize, ast for the carets of
    3.11+): a module of the same name in a --path directory can neither
    replace them for the runtime nor break its error replies."""
    global _traceback
    if _traceback is None:
        traceback = stdlib.own_module("traceback")
        stdlib.run_protected(_warm_up, traceback)
        _traceback = traceback
    return _traceback


def _warm_up(traceback: Any) -> None:
    try:
        _warm_up_traceback()
    except Exception as exc:  # formatted whole: format_traceback would skip the runtime's frames
        traceback.format_exception(type(exc), exc, exc.__traceback__)


def _warm_up_traceback() -> None:
    table: Dict[str, int] = {}
    try:
        table["key"] + 1  # a subscript and an operator: the carets' code runs
    except KeyError as error:
        # Not chained to the exception the runtime is describing (the
        # user's: its str() must not run once more, here).
        error.__context__ = None
        table.no_such_name  # type: ignore[attr-defined]  # chained, with a suggestion (3.10+)


def type_name(exc: BaseException) -> str:
    """'ValueError' for builtins, 'module.QualName' otherwise."""
    cls = type(exc)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return "%s.%s" % (cls.__module__, cls.__qualname__)


# The message of an exception whose str() raised.
STR_FAILED = "<exception str() failed>"


def exception_message(exc: BaseException) -> str:
    """str(exc), or STR_FAILED when that raises, whatever it raises
    (a SystemExit or a BaseException of the module's own from __str__ too:
    the call's error must still reach Go)."""
    try:
        return str(exc)
    except BaseException:
        return STR_FAILED


def describe_exception(exc: BaseException) -> Tuple[str, str, str, str]:
    """(type name, message, traceback, hint) of exc, an exception of the
    user's code, for its ERROR. Its __str__ is the user's code too: it runs
    interruptibly (Go's interrupt of a call whose exception's str() never
    ends gives STR_FAILED, and the call its ERROR), and once: when it
    failed, the traceback is told without calling it again. (On the main
    thread only: async mode's loop thread answers its tasks' calls while
    the main thread reads Go's frames, where SIGINT must not raise.)"""
    was_user = STATE.in_user_code
    try:
        STATE.in_user_code = was_user or _thread.get_ident() == MAIN_THREAD
        message = str(exc)
    except BaseException:
        message = None
    finally:
        STATE.in_user_code = was_user
    if message is None:
        return type_name(exc), STR_FAILED, format_traceback(exc, False), ""
    return type_name(exc), message, format_traceback(exc), missing_module_hint(exc) or address_space_hint(exc)


def format_traceback(exc: BaseException, with_str: bool = True) -> str:
    """The traceback as Python prints it, starting below the runtime's frames.
    Should the traceback module fail (a user replaced what it imports), a
    plain one, so that the error still reaches Go. Without with_str, str(exc)
    is not called: the last line says STR_FAILED."""
    tb = exc.__traceback__
    while tb is not None and (tb.tb_frame.f_globals.get("__name__") in _RUNTIME_MODULES or _awaiting_frame(tb.tb_frame)):
        tb = tb.tb_next
    # An interrupt's traceback ends in the SIGINT handler: cut it off.
    on_sigint = Interrupts.on_sigint.__code__
    node = tb
    while node is not None and node.tb_next is not None:
        following = node.tb_next.tb_frame
        if following.f_code is on_sigint or following.f_globals.get("__name__") == _AIO_MODULE:
            node.tb_next = None
        else:
            node = node.tb_next
    try:
        traceback = _traceback if _traceback is not None else traceback_module()
        if not with_str:
            return "".join(["Traceback (most recent call last):\n"] + traceback.format_tb(tb) + ["%s: %s\n" % (type_name(exc), STR_FAILED)])
        return "".join(traceback.format_exception(type(exc), exc, tb))
    except BaseException:  # an exception's __str__ that raises SystemExit, say
        return _plain_traceback(exc, tb, exception_message(exc) if with_str else STR_FAILED)


def _plain_traceback(exc: BaseException, tb: Any, message: str) -> str:
    lines = ["Traceback (most recent call last):\n"]
    while tb is not None:
        code = tb.tb_frame.f_code
        lines.append('  File "%s", line %d, in %s\n' % (code.co_filename, tb.tb_lineno, code.co_name))
        tb = tb.tb_next
    lines.append("%s: %s\n" % (type_name(exc), message))
    return "".join(lines)


def _awaiting_frame(frame: Any) -> bool:
    """Whether frame is of the machinery that awaits an async function: aio.py
    or asyncio's own (above the user's coroutine in a traceback)."""
    module = frame.f_globals.get("__name__", "")
    return module == _AIO_MODULE or module.startswith("asyncio.")


def utf8_safe(text: str) -> str:
    """text with lone surrogates (from os.fsdecode, say), which msgpack
    cannot encode, escaped."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def clip_utf8(text: str, size: int, keep_end: bool) -> str:
    """At most size bytes of text's UTF-8, from its start or its end."""
    data = text.encode("utf-8")
    if len(data) <= size:
        return text
    data = data[len(data) - size :] if keep_end else data[:size]
    return data.decode("utf-8", "ignore")  # drops a character cut in two


def not_encodable_detail(result: Any, exc: BaseException, root: str = "result") -> str:
    """What the encoder's exc says about result, led by where in result the
    value it refused is and that value's type: "result['items'][1]['score']:
    set (can not serialize 'set' object)". Just exc's message when the place
    cannot be told: the value is too deep or cyclic, or the first element
    refused on its own is not what the encoder raised for."""
    return not_encodable(result, exc, root)[0]


def not_encodable(result: Any, exc: BaseException, root: str = "result") -> Tuple[str, str]:
    """(not_encodable_detail, the hint that says how to make the value
    encodable: convert it, or register its type; "" when the value is too
    deep or cyclic). root names result in the detail's path."""
    message = exception_message(exc)
    try:
        found = codecs.find_unencodable(result, root)
        if found is None:
            return message, ""
        path, item, item_exc = found
        if type(item_exc) is not type(exc) or exception_message(item_exc) != message:
            return message, ""
        cls = type(item)
        module = getattr(cls, "__module__", None)
        label = cls.__name__ if module in (None, "builtins") else "%s.%s" % (module, cls.__name__)
        return "%s: %s (%s)" % (path, label, message), unsupported_hint(item)
    except BaseException as error:
        if isinstance(error, KeyboardInterrupt) and STATE.in_user_code:
            raise  # Go's interrupt, in call_go (whose arguments are described in the user's code)
        # A container whose items() or repr() of a key raise, a value whose
        # __getattr__ or __class__ raise (a proxy, a lazy object), a hook's
        # SystemExit: the encoder's message alone.
        return message, ""


def unsupported_hint(value: Any) -> str:
    """How to send value, of a type the codec does not encode: what to
    convert it to, and the runtime's hooks (docs/types.md)."""
    cls = type(value)
    if cls is int:  # beyond 64 bits: no hook sees an int
        return "convert it: str(value), or float(value) if precision may be lost"
    if _is_naive_datetime(value):
        return "give it a time zone: value.replace(tzinfo=datetime.timezone.utc), or value.astimezone() for local time"
    if isinstance(value, (set, frozenset)):
        convert = "sorted(value) or list(value)"
    elif _is_dataclass_instance(value):
        convert = "dataclasses.asdict(value)"
    elif hasattr(value, "_asdict"):  # a namedtuple is a tuple: never here
        convert = "value._asdict()"
    elif hasattr(value, "__dict__"):
        convert = "a dict (vars(value)) or a tuple of its fields"
    else:
        convert = "a list, dict, str, bytes or number"
    return (
        "convert it to %s before returning it; or have the worker encode it: "
        "pypool_runtime.set_default(function) converts every value nothing else encodes, "
        "pypool_runtime.register_ext(%s, code, encode=..., decode=...) sends it as a msgpack extension "
        "that Go decodes with a pypool.Ext in Config.Extensions (docs/types.md)" % (convert, cls.__name__)
    )


def _is_naive_datetime(value: Any) -> bool:
    datetime = sys.modules.get("datetime")  # never imported here: it would come from the user's paths
    return datetime is not None and isinstance(value, datetime.datetime) and value.tzinfo is None


def _is_dataclass_instance(value: Any) -> bool:
    return hasattr(type(value), "__dataclass_fields__")


def interpreter() -> str:
    """The interpreter this process runs, as a hint names it:
    "/usr/bin/python3 (3.11.2)"."""
    return "%s (%s)" % (sys.executable or "python3", sys.version.split()[0])


# DISTRIBUTIONS names the package to install for the modules whose package
# has another name, among those most often met (pip install PIL fails; the
# package is Pillow).
DISTRIBUTIONS = {
    "PIL": "Pillow",
    "sklearn": "scikit-learn",
    "skimage": "scikit-image",
    "cv2": "opencv-python",
    "yaml": "PyYAML",
    "bs4": "beautifulsoup4",
    "dateutil": "python-dateutil",
    "dotenv": "python-dotenv",
    "jwt": "PyJWT",
    "Crypto": "pycryptodome",
    "OpenSSL": "pyOpenSSL",
    "serial": "pyserial",
    "zmq": "pyzmq",
    "fitz": "PyMuPDF",
    "docx": "python-docx",
    "pptx": "python-pptx",
    "magic": "python-magic",
    "attr": "attrs",
    "gi": "PyGObject",
}


def missing_module_hint(exc: BaseException) -> str:
    """For a ModuleNotFoundError (numpy not installed, say): the interpreter
    that did not find it and the fix, naming the package to install where
    its name is not the module's (sklearn: scikit-learn); "" for any other
    exception."""
    missing = getattr(exc, "name", None) if isinstance(exc, ModuleNotFoundError) else None
    if not missing or type(missing) is not str:  # name=42 is the module's own doing
        return ""
    top = missing.partition(".")[0]
    package = top
    if top in DISTRIBUTIONS:
        package = "%s (the package that provides %s)" % (DISTRIBUTIONS[top], top)
    return "install %s for %s, or set Config.Python to an interpreter that has it" % (package, interpreter())


# Config.Limits.AddressSpace as startup.apply_limits set it: (the bytes
# configured, the soft limit set, lower when the Go process passes on a
# lower hard limit); 0, 0 without.
_address_space = (0, 0)
# The start of address_space_hint's text, made when the limit is set: an
# error found with no memory left still names the limit and the fix.
_address_space_text = ""

_MIB = 1 << 20

# What an extension module that could not be mapped says (dlopen's errors
# when mmap fails), in an ImportError or OSError: not "cannot allocate
# memory in static TLS block", which is not the address space's.
_MAP_FAILED = ("failed to map segment", "cannot map zero-fill pages", "Cannot allocate memory")


def limit_address_space(configured: int, applied: int) -> None:
    """Record Config.Limits.AddressSpace, configured bytes, set as applied
    (the soft limit), for address_space_hint."""
    global _address_space, _address_space_text
    _address_space = (configured, applied)
    text = "the worker ran out of address space: Config.Limits.AddressSpace is %d bytes (%s)" % (configured, _mib(configured))
    if applied < configured:
        text += ", lowered to %d bytes by the RLIMIT_AS hard limit the Go process passes on (ulimit -v)" % applied
    _address_space_text = text


def address_space_hint(exc: BaseException, thread: bool = False) -> str:
    """For an exception that says the worker's address space ran out under
    Config.Limits.AddressSpace: a MemoryError, an extension module that
    could not be mapped (ImportError, OSError), or, with thread, the
    RuntimeError of a thread that could not start because its stack did
    not fit: the limit, what the worker had mapped, and the fix. "" without
    the limit, or for another exception (a thread refused with room left
    for its stack: a limit on processes, for the moment)."""
    configured, applied = _address_space
    if not configured:
        return ""
    if thread:
        if not isinstance(exc, RuntimeError):
            return address_space_hint(exc)  # asyncio's import, the loop's making
    elif not isinstance(exc, MemoryError):
        message = exception_message(exc) if isinstance(exc, (ImportError, OSError)) else ""
        if not any(marker in message for marker in _MAP_FAILED) or "static TLS" in message:
            return ""
    try:
        mapped = _mapped_bytes()
        stack = _thread_stack_bytes() if thread else 0
    except Exception:  # out of memory here too, or no /proc: the limit and the fix
        return _address_space_text + ": raise Config.Limits.AddressSpace"
    if thread and mapped and stack:
        if mapped + stack <= applied:
            return ""  # it had room for the stack: not the address space
        return "%s, of which it had %s mapped, and the thread's stack needs %s more: raise Config.Limits.AddressSpace above %s" % (
            _address_space_text, _mib(mapped), _mib(stack), _mib(mapped + stack))
    if mapped:
        return "%s, of which it had %s mapped: raise Config.Limits.AddressSpace" % (_address_space_text, _mib(mapped))
    return _address_space_text + ": raise Config.Limits.AddressSpace"


def _mib(size: int) -> str:
    """size in MiB, rounded up: "256 MiB"."""
    return "%d MiB" % -(-size // _MIB)


def _mapped_bytes() -> int:
    """The process's virtual memory (VmSize), or 0 where /proc does not
    tell it."""
    try:
        status = open("/proc/self/status", "rb")
    except OSError:
        return 0
    with status:
        for line in status:
            if line.startswith(b"VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _thread_stack_bytes() -> int:
    """What a new thread's stack reserves: _thread.stack_size's (the
    module's threading.stack_size), or the default, RLIMIT_STACK's soft limit (glibc's); 0 when it cannot be told."""
    size = _thread.stack_size()  # which sets it to 0 as it reads it: set it back
    if size:
        _thread.stack_size(size)
        return size
    resource = sys.modules.get("resource")  # apply_limits imported it
    if resource is None:
        return 0
    soft = resource.getrlimit(resource.RLIMIT_STACK)[0]
    return 0 if soft == resource.RLIM_INFINITY else soft
