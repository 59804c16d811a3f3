"""The grader's wire format: values the learner's kernel sends back, as plain data only.

While grading, the learner's function runs in the learner's kernel and the check runs in the
grader (see :mod:`minillm.course.remote`). What comes back from the kernel is JSON built by
:func:`encode` and rebuilt by :func:`decode` into fresh objects of exact built-in types, so no
object made by the learner (a ``Tensor`` subclass whose ``__gt__`` is all-False, an ``int``
subclass whose ``__ne__`` is False, a ``str`` subclass) ever reaches a comparison in the grader.

Plain data:

* ``None``, ``bool``, ``int``, ``float`` (NaN and inf included), ``str``;
* ``list``; ``tuple`` as ``{"$t": [...]}``; ``dict`` as ``{"$d": [[key, value], ...]}`` (any plain key);
* a tensor as ``{"$T": dtype, "s": shape, "b": base64 of its bytes}`` (CPU, contiguous, no grad);
* ``torch.dtype`` as ``{"$dt": name}``, ``torch.Size`` as a tuple;
* a dataclass defined in ``minillm`` (a ``RunResult``, an ``Event``) as ``{"$dc": "module:Name", "f": {...}}``,
  rebuilt only if that name is a dataclass of a ``minillm`` module in the grader;
* an object with a ``_minillm_plain()`` method (the ring tasks' message logs) as ``{"$p": tag, "v": ...}``,
  rebuilt as a :class:`LogView`.

A list, dict or tensor met twice is sent once and referred to (``{"$r": k}``), so ``out is chunks``
still holds after the trip. Anything else is an error that names its type.
"""

from __future__ import annotations

import base64
import dataclasses
import importlib
import json
from typing import Any

__all__ = ["encode", "decode", "dumps", "loads", "PlainDataError", "LogView", "MAX_REPLY_BYTES", "OPAQUE"]

#: The largest reply the grader reads (bytes of JSON); a bigger one is an error, not a memory blow-up.
MAX_REPLY_BYTES = 64 * 2**20
_MAX_DEPTH = 40
_DTYPES = (
    "float64", "float32", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool",
    "complex64", "complex128", "float8_e4m3fn", "float8_e5m2",
)


class PlainDataError(TypeError):
    """A value cannot travel as plain data (a type the format does not know, a cycle, too deep)."""


class LogView:
    """What a ring task's message log becomes in the grader: ``sent`` and ``received`` lists of (peer, numel)."""

    def __init__(self, rank: int, world_size: int, sent: list, received: list) -> None:
        self.rank, self.world_size = rank, world_size
        self.sent, self.received = sent, received

    def __repr__(self) -> str:
        return f"LogView(rank={self.rank}, sent={self.sent}, received={self.received})"


# --------------------------------------------------------------------------- encoding (in the kernel)


def encode(obj: Any, lenient: bool = False) -> Any:
    """``obj`` as JSON-able plain data (see the module docstring); raises :class:`PlainDataError`.

    ``lenient=True`` (the arguments as a call left them, sent back only so that buffers filled in
    place reach the grader) sends a value of an unknown type as :data:`OPAQUE` instead of failing.
    """
    return _Encoder(lenient).enc(obj, 0)


class _Opaque:
    def __repr__(self) -> str:
        return "OPAQUE"


#: What a value of an unknown type becomes in a lenient :func:`encode`; the grader leaves it alone.
OPAQUE = _Opaque()


class _Encoder:
    def __init__(self, lenient: bool = False) -> None:
        self.lenient = lenient
        self.seen: dict[int, int] = {}
        self.keep: list = []  # keeps encoded objects alive so their ids stay unique
        self.active: set[int] = set()

    def enc(self, obj: Any, depth: int) -> Any:
        import torch

        if depth > _MAX_DEPTH:
            raise PlainDataError(f"a value nested more than {_MAX_DEPTH} levels deep")
        if obj is None or obj is True or obj is False:
            return obj
        if isinstance(obj, bool):
            return bool(obj)
        if isinstance(obj, int):
            return int.__index__(obj)
        if isinstance(obj, float):
            return float.__float__(obj)
        if isinstance(obj, str):
            return str.__str__(obj)
        if isinstance(obj, torch.dtype):
            return {"$dt": str(obj).replace("torch.", "")}
        if isinstance(obj, torch.Size):
            return {"$t": [int(v) for v in obj]}
        if type(obj).__module__ == "numpy" and hasattr(obj, "item") and getattr(obj, "ndim", 1) == 0:
            return self.enc(obj.item(), depth + 1)
        if isinstance(obj, (list, dict, torch.Tensor)):
            key = id(obj)
            if key in self.seen:
                return {"$r": self.seen[key]}
            if key in self.active:
                raise PlainDataError("a value that contains itself")
            self.active.add(key)
            try:
                body = self._container(obj, depth)
            finally:
                self.active.discard(key)
            k = len(self.seen)
            self.seen[key] = k
            self.keep.append(obj)
            return {"$k": k, "v": body}
        if isinstance(obj, tuple):
            return {"$t": [self.enc(v, depth + 1) for v in obj]}
        plain = getattr(type(obj), "_minillm_plain", None)
        if plain is not None and type(obj).__module__.startswith("minillm."):
            tag, value = plain(obj)
            return {"$p": str(tag), "v": self.enc(value, depth + 1)}
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type) and type(obj).__module__.startswith("minillm."):
            fields = {}
            for f in dataclasses.fields(obj):
                try:
                    fields[f.name] = self.enc(getattr(obj, f.name), depth + 1)
                except PlainDataError:
                    fields[f.name] = None  # a field the checks do not read (a memory ledger, say)
            return {"$dc": f"{type(obj).__module__}:{type(obj).__qualname__}", "f": fields}
        if self.lenient:
            return {"$x": type(obj).__qualname__}
        raise PlainDataError(
            f"a {type(obj).__module__}.{type(obj).__qualname__} cannot be sent back to the grader; "
            "return tensors, numbers, strings, lists, tuples or dicts"
        )

    def _container(self, obj: Any, depth: int) -> Any:
        import torch

        if isinstance(obj, torch.Tensor):
            t = obj.detach()
            t = torch.Tensor.as_subclass(t, torch.Tensor).cpu().contiguous().clone()
            dtype = str(t.dtype).replace("torch.", "")
            if dtype not in _DTYPES:
                raise PlainDataError(f"a tensor of dtype {dtype} cannot be sent back to the grader")
            raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
            return {"$T": dtype, "s": [int(v) for v in t.shape], "b": base64.b64encode(raw).decode("ascii")}
        if isinstance(obj, list):
            return [self.enc(v, depth + 1) for v in list.__iter__(obj)]
        return {"$d": [[self.enc(k, depth + 1), self.enc(v, depth + 1)] for k, v in dict.items(obj)]}


def dumps(obj: Any) -> str:
    """:func:`encode` then JSON text."""
    return json.dumps(encode(obj))


# --------------------------------------------------------------------------- decoding (in the grader)


def loads(text: str) -> Any:
    """JSON text from the kernel to fresh exact-type objects; raises :class:`PlainDataError` on anything odd."""
    if not isinstance(text, str):
        raise PlainDataError(f"the reply is a {type(text).__name__}, not JSON text")
    if len(text) > MAX_REPLY_BYTES:
        raise PlainDataError(f"the reply is {len(text)} bytes, over the grader's limit of {MAX_REPLY_BYTES}")
    try:
        data = json.loads(text)
    except ValueError as e:
        raise PlainDataError(f"the reply is not JSON ({e})") from None
    return decode(data)


def decode(data: Any) -> Any:
    """Plain JSON data (from :func:`encode`) to objects; every value is a fresh object of an exact type."""
    return _Decoder().dec(data, 0)


class _Decoder:
    def __init__(self) -> None:
        self.refs: dict[int, Any] = {}

    def dec(self, d: Any, depth: int) -> Any:
        if depth > _MAX_DEPTH + 5:
            raise PlainDataError("the reply is nested too deeply")
        if d is None or type(d) in (bool, int, float, str):
            return d
        if type(d) is list:
            return [self.dec(v, depth + 1) for v in d]
        if type(d) is not dict or len(d) not in (1, 2):
            raise PlainDataError(f"unexpected {type(d).__name__} in the reply")
        if "$r" in d:
            k = d["$r"]
            if type(k) is not int or k not in self.refs:
                raise PlainDataError("a reference to nothing in the reply")
            return self.refs[k]
        if "$k" in d:
            k, body = d["$k"], d.get("v")
            if type(k) is not int:
                raise PlainDataError("a bad reference number in the reply")
            val = self._container(body, depth)
            self.refs[k] = val
            return val
        if "$t" in d and type(d["$t"]) is list:
            return tuple(self.dec(v, depth + 1) for v in d["$t"])
        if "$x" in d:
            return OPAQUE
        if "$dt" in d:
            return self._dtype(d["$dt"])
        if "$p" in d:
            v = self.dec(d.get("v"), depth + 1)
            if d["$p"] == "p2p_log" and type(v) is dict:
                return LogView(v.get("rank"), v.get("world_size"), list(v.get("sent", [])), list(v.get("received", [])))
            raise PlainDataError(f"unknown plain tag {d['$p']!r}")
        if "$dc" in d:
            return self._dataclass(d["$dc"], d.get("f"), depth)
        raise PlainDataError(f"unknown object {sorted(d)!r} in the reply")

    def _container(self, body: Any, depth: int) -> Any:
        if type(body) is list:
            return [self.dec(v, depth + 1) for v in body]
        if type(body) is dict and "$T" in body:
            return self._tensor(body)
        if type(body) is dict and type(body.get("$d")) is list:
            out = {}
            for pair in body["$d"]:
                if type(pair) is not list or len(pair) != 2:
                    raise PlainDataError("a bad dict entry in the reply")
                key = self.dec(pair[0], depth + 1)
                try:
                    out[key] = self.dec(pair[1], depth + 1)
                except TypeError:
                    raise PlainDataError("an unhashable dict key in the reply") from None
            return out
        raise PlainDataError("a bad container in the reply")

    @staticmethod
    def _dtype(name: Any):
        import torch

        if name not in _DTYPES:
            raise PlainDataError(f"unknown dtype {name!r} in the reply")
        return getattr(torch, name)

    def _tensor(self, body: dict):
        import torch

        dtype = self._dtype(body.get("$T"))
        shape = body.get("s")
        if type(shape) is not list or not all(type(v) is int and v >= 0 for v in shape):
            raise PlainDataError("a tensor with a bad shape in the reply")
        try:
            raw = base64.b64decode(body.get("b", ""), validate=True)
        except (ValueError, TypeError):
            raise PlainDataError("a tensor with bad bytes in the reply") from None
        numel = 1
        for v in shape:
            numel *= v
        itemsize = torch.empty((), dtype=dtype).element_size()
        if len(raw) != numel * itemsize:
            raise PlainDataError(f"a tensor of shape {tuple(shape)} with {len(raw)} bytes in the reply")
        if numel == 0:
            return torch.empty(shape, dtype=dtype)
        return torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(dtype).reshape(shape).clone()

    def _dataclass(self, name: Any, fields: Any, depth: int):
        if type(name) is not str or ":" not in name or type(fields) is not dict:
            raise PlainDataError("a bad dataclass in the reply")
        mod, qual = name.split(":", 1)
        if not mod.startswith("minillm.") or "." in qual:
            raise PlainDataError(f"{name} is not a minillm dataclass")
        try:
            cls = getattr(importlib.import_module(mod), qual)
        except (ImportError, AttributeError):
            raise PlainDataError(f"{name} is not a minillm dataclass") from None
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
            raise PlainDataError(f"{name} is not a minillm dataclass")
        names = {f.name for f in dataclasses.fields(cls)}
        obj = object.__new__(cls)
        for f in names:
            object.__setattr__(obj, f, self.dec(fields.get(f), depth + 1))
        return obj
