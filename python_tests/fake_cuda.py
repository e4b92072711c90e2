"""A fake CUDA device for the device-placement guard: the tests of ``GUARDED_DIRS`` run once as they would on a GPU,
on a machine without one (``python -m pytest --fake-cuda``; tools/run_tests.sh runs them so).

Under :func:`fake_cuda`:

* ``torch.cuda.is_available()`` is True (one device, ``cuda:0``), so ``Trainer(device="auto")``, the torch backend's
  ``device="auto"`` and every other "CUDA when available" choice picks CUDA, as on the GPU machine;
* a tensor placed on ``"cuda"`` (``.to("cuda")``, ``.cuda()``, ``Module.to``, a factory's ``device="cuda"``,
  ``torch.tensor(..., device=...)``) becomes a :class:`FakeCudaTensor`: it says ``device == cuda:0`` and
  ``is_cuda``, computes on the CPU (the same kernels, so the same numbers as a CPU run), refuses ``.numpy()`` as a
  CUDA tensor does, and every op that mixes it with a CPU tensor raises CUDA's error ("Expected all tensors to be
  on the same device") -- except what CUDA allows: 0-dim CPU tensors (scalars), copies between devices
  (``copy_``, ``.to``) and CPU index tensors;
* what a fake device cannot do is refused with :class:`FakeCudaUnsupported` naming the fix (streams, events, CUDA
  graphs, handing device memory to native code): such a test needs a real device and is marked ``cuda``
  (``GUARDED_DIRS``' tests marked ``cuda`` are not faked).

What it does not model: CUDA numerics (TF32, other reductions, non-deterministic atomics; the values are the CPU's),
autocast on CUDA (a FakeCudaTensor is a CPU tensor to the dispatcher, so ``torch.autocast("cuda")`` leaves it in
its dtype), asynchronous execution, memory limits, and more than one device.
"""

from __future__ import annotations

import contextlib
import types
from typing import Any, Callable, Dict, Iterator, List, Tuple

import torch
from torch.utils._python_dispatch import return_and_correct_aliasing

# the test folders whose tests run under the guard (python_tests/conftest.py): the model and training code, where
# "CUDA when available" device choices are made
GUARDED_DIRS = ("train", "models", "eval")
FAKE_DEVICE = torch.device("cuda", 0)
FAKE_NAME = "fake CUDA device (python_tests/fake_cuda.py)"
aten = torch.ops.aten

# ops that take CPU tensors beside CUDA ones on a real device: copies across devices, CPU index tensors
_MIXING_ALLOWED = {
    aten.copy_.default,
    aten._to_copy.default,
    aten.index.Tensor,
    aten.index_put.default,
    aten.index_put_.default,
    aten._index_put_impl_.default,
}


class FakeCudaUnsupported(RuntimeError):
    """Something the fake CUDA device cannot do (streams, graphs, device memory for native code)."""


def _mixed_device_error(func) -> RuntimeError:
    return RuntimeError(
        "Expected all tensors to be on the same device, but found at least two devices, cuda:0 and cpu! "
        f"(in {func}; raised by the fake CUDA device of python_tests/fake_cuda.py, as CUDA raises it on a GPU)"
    )


def _unwrap(value):
    return value.elem if isinstance(value, FakeCudaTensor) else value


def _wrap(value):
    return FakeCudaTensor(value) if type(value) is torch.Tensor else value


class FakeCudaTensor(torch.Tensor):
    """A tensor on the fake ``cuda:0``: a wrapper around a CPU tensor (``elem``) that runs every op on it."""

    __torch_function__ = torch._C._disabled_torch_function_impl
    elem: torch.Tensor

    @staticmethod
    def __new__(cls, elem: torch.Tensor, requires_grad: bool = False):
        if isinstance(elem, FakeCudaTensor):
            elem = elem.elem
        wrapper = torch.Tensor._make_wrapper_subclass(  # type: ignore[attr-defined]
            cls,
            elem.size(),
            strides=elem.stride(),
            storage_offset=elem.storage_offset(),
            dtype=elem.dtype,
            layout=elem.layout,
            device=elem.device,  # the dispatcher's device stays the CPU: autograd and guards need no driver
            requires_grad=elem.requires_grad or requires_grad,
        )
        wrapper.elem = elem
        return wrapper

    # what Python code sees: a CUDA tensor
    @property  # type: ignore[override]
    def device(self) -> torch.device:
        return FAKE_DEVICE

    @property  # type: ignore[override]
    def is_cuda(self) -> bool:
        return True

    @property  # type: ignore[override]
    def is_cpu(self) -> bool:
        return False

    def get_device(self) -> int:  # type: ignore[override]
        return 0

    @property  # type: ignore[override]
    def data(self):
        return FakeCudaTensor(self.elem.detach())

    @data.setter
    def data(self, value) -> None:
        if not isinstance(value, FakeCudaTensor):
            raise FakeCudaUnsupported("the fake CUDA device cannot move a tensor to the CPU through `.data = ...`")
        torch._C.TensorBase.data.__set__(self, value)  # type: ignore[attr-defined]
        self.elem = value.elem

    def numpy(self, *, force: bool = False):  # type: ignore[override]
        if force:
            return self.elem.detach().numpy()
        raise TypeError(
            "can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to copy the tensor to host memory "
            "first."
        )

    def new_tensor(self, data, dtype=None, device=None, requires_grad=False):  # type: ignore[override]
        # a factory with no tensor argument does not reach __torch_dispatch__: on a real device `x.new_tensor(v)` is on
        # x's device, so here it is on the fake one (unless a device is given)
        made = self.elem.new_tensor(data, dtype=dtype, requires_grad=requires_grad)
        return made if device is not None and not _is_cuda(device) else FakeCudaTensor(made)

    def tolist(self):  # type: ignore[override]
        return self.elem.tolist()

    def cpu(self, memory_format=torch.preserve_format):  # type: ignore[override]
        return self.to("cpu", memory_format=memory_format)

    def __reduce_ex__(self, protocol):
        # torch.save: stored as a CPU tensor (a real CUDA tensor is stored as CUDA; zsseg_rt loads with map_location)
        return self.elem.__reduce_ex__(protocol)

    def __dlpack__(self, *args, **kwargs):
        raise FakeCudaUnsupported(
            "the fake CUDA device has no device memory to hand to native code (DLPack, zsseg_rt.ops on CUDA): a test "
            "of that path needs a real device (mark it `cuda`)"
        )

    @property
    def __cuda_array_interface__(self):
        return self.__dlpack__()

    def __repr__(self, *, tensor_contents=None) -> str:  # type: ignore[override]
        return f"{self.elem!r} (on the fake cuda:0)"

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        check = func not in _MIXING_ALLOWED
        unwrapped_args = tuple(_unwrap_checked(value, check, func) for value in args)
        unwrapped_kwargs = {key: _unwrap_checked(value, check, func) for key, value in kwargs.items()}
        if _is_cuda(unwrapped_kwargs.get("device")):
            unwrapped_kwargs["device"] = torch.device("cpu")
        # the result is on the fake device, also where C++ passed the wrapper's own (CPU) device on (`x.new_zeros(n)`,
        # a dtype conversion, autograd's copies): explicit moves to the CPU are `.to` / `.cpu`, handled in Python
        out = func(*unwrapped_args, **unwrapped_kwargs)
        writes, views = _aliasing(func)
        if writes:  # an in-place or out= op returns the (wrapper) input it wrote
            return return_and_correct_aliasing(func, args, kwargs, _wrap_all(out))
        if views and torch.is_inference_mode_enabled():
            # a view of a normal tensor is a normal tensor in inference mode too (autograd then shares its version
            # counter, which an inference tensor has not): its wrapper is made outside inference mode
            with torch.inference_mode(False):
                return _wrap_all(out)
        return _wrap_all(out)  # a view's wrapper wraps a view of the input's CPU tensor: the data is shared there


def _unwrap_checked(value, check: bool, func):
    """``value`` with FakeCudaTensors replaced by their CPU tensors (in lists and tuples too); with ``check``, a CPU
    tensor of more than 0 dimensions raises CUDA's mixed-device error."""
    if isinstance(value, FakeCudaTensor):
        return value.elem
    if isinstance(value, torch.Tensor):
        if check and value.dim() > 0:
            raise _mixed_device_error(func)
        return value
    if isinstance(value, (list, tuple)):
        return type(value)(_unwrap_checked(item, check, func) for item in value)
    return value


def _wrap_all(value):
    if type(value) is torch.Tensor:
        return FakeCudaTensor(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_wrap_all(item) for item in value)
    return value


_ALIASING: Dict[Any, Tuple[bool, bool]] = {}


def _aliasing(func) -> Tuple[bool, bool]:
    """(whether the op returns an input it wrote: in-place, out=; whether it returns a view of an input)."""
    found = _ALIASING.get(func)
    if found is None:
        infos = [r.alias_info for r in func._schema.returns if r.alias_info is not None]
        found = _ALIASING[func] = (any(i.is_write for i in infos), any(not i.is_write for i in infos))
    return found


def _is_cuda(device) -> bool:
    return device is not None and torch.device(device).type == "cuda"


def _check_index(device) -> None:
    if device is not None and torch.device(device).index not in (None, 0):
        raise FakeCudaUnsupported(f"the fake CUDA device is cuda:0 only, {device} was asked for")


def _set_device(device) -> None:
    """As torch.cuda.set_device: a device needs its index (``torch.device("cuda")`` raises torch's ValueError: the
    first H200 run found ``Trainer(device="cuda")`` failing so)."""
    if (
        isinstance(device, (str, torch.device))
        and torch.device(device).type == "cuda"
        and torch.device(device).index is None
    ):
        raise ValueError(f"Expected a torch.device with a specified index or an integer, but got:{device}")
    _check_index(device)


class _ToFakeCuda(torch.autograd.Function):
    """``.to("cuda")`` of a tensor that requires grad: the gradient goes back to the CPU tensor."""

    @staticmethod
    def forward(ctx, tensor):
        return FakeCudaTensor(tensor.detach().clone())

    @staticmethod
    def backward(ctx, grad):
        return _unwrap(grad)


class _FromFakeCuda(torch.autograd.Function):
    """``.to("cpu")`` of a fake CUDA tensor that requires grad: the gradient goes back onto the fake device."""

    @staticmethod
    def forward(ctx, tensor):
        return tensor.elem.detach().clone()

    @staticmethod
    def backward(ctx, grad):
        return FakeCudaTensor(grad)


def _parse_to(args, kwargs) -> Tuple[Any, Any, bool, Any, bool]:
    """``Tensor.to``'s arguments: (device, dtype, non_blocking, memory_format, copy); a tensor argument gives its
    device as Python sees it (the fake one for a FakeCudaTensor)."""
    args = list(args)
    copy = bool(kwargs.pop("copy", False))
    if args and isinstance(args[0], torch.Tensor):
        other = args.pop(0)
        args = [other.device, other.dtype] + args
    device, dtype, non_blocking, memory_format = torch._C._nn._parse_to(*args, **kwargs)
    return device, dtype, bool(non_blocking), memory_format, copy


def _make_to(original: Callable) -> Callable:
    def to(self, *args, **kwargs):
        device, dtype, non_blocking, memory_format, copy = _parse_to(args, dict(kwargs))
        fake = isinstance(self, FakeCudaTensor)
        memory_format = memory_format if memory_format is not None else torch.preserve_format
        if _is_cuda(device):
            _check_index(device)
            if not fake:
                tensor = self if dtype is None else original(self, dtype=dtype)
                if tensor.requires_grad and torch.is_grad_enabled():
                    return _ToFakeCuda.apply(tensor)
                return FakeCudaTensor(original(tensor, "cpu", copy=True, memory_format=memory_format))
            if dtype is None and not copy:
                return self
            return original(self, dtype=dtype, copy=copy, memory_format=memory_format)
        if fake and device is not None:  # to the CPU: always a copy, as from a GPU
            if self.requires_grad and torch.is_grad_enabled():
                out = _FromFakeCuda.apply(self)
            else:
                out = self.elem.clone(memory_format=memory_format)
            return out if dtype is None else original(out, dtype=dtype)
        return original(self, *args, **kwargs)

    return to


def _make_cuda(to: Callable) -> Callable:
    def cuda(self, device=None, non_blocking=False, memory_format=torch.preserve_format):
        _check_index(device if device is None or not isinstance(device, int) else torch.device("cuda", device))
        return to(self, FAKE_DEVICE, non_blocking=non_blocking, memory_format=memory_format)

    return cuda


def _make_factory(original: Callable, to: Callable) -> Callable:
    """``torch.tensor`` / ``torch.as_tensor`` with ``device="cuda"``: made on the CPU, then placed."""

    def factory(*args, **kwargs):
        device = kwargs.get("device")
        if not _is_cuda(device):
            return original(*args, **kwargs)
        _check_index(device)
        kwargs["device"] = "cpu"
        tensor = original(*args, **kwargs)
        return tensor if isinstance(tensor, FakeCudaTensor) else to(tensor, FAKE_DEVICE)

    return factory


def _unsupported(what: str) -> Callable:
    def refuse(*args, **kwargs):
        raise FakeCudaUnsupported(
            f"the fake CUDA device has no {what} (torch.cuda): a test that needs them runs on a real device (mark "
            "it `cuda`)"
        )

    return refuse


def _unsupported_class(what: str) -> type:
    """A stand-in for a class of torch.cuda (Stream, Event, CUDAGraph) that refuses to be made: a class, so that
    annotations such as transformers' ``torch.cuda.CUDAGraph | None`` (evaluated at import) still work."""
    refuse = _unsupported(what)

    class Unsupported:
        def __new__(cls, *args, **kwargs):
            refuse()

    Unsupported.__name__ = Unsupported.__qualname__ = f"FakeCuda{what.title().replace(' ', '')}Unsupported"
    return Unsupported


def _empty(size, dtype=None, layout=None, device=None, pin_memory=None, memory_format=None):
    return FakeCudaTensor(torch.empty(size, dtype=dtype, layout=layout, device="cpu", memory_format=memory_format))


def _empty_strided(size, stride, dtype=None, layout=None, device=None, pin_memory=None):
    return FakeCudaTensor(torch.empty_strided(size, stride, dtype=dtype, layout=layout, device="cpu"))


def _patches() -> List[Tuple[Any, str, Any]]:
    """(owner, attribute, fake) for every patched name."""
    to = _make_to(torch.Tensor.to)
    cuda = torch.cuda
    properties = types.SimpleNamespace(
        name=FAKE_NAME, major=9, minor=0, total_memory=80 << 30, multi_processor_count=132, is_integrated=False
    )
    rng_state = torch.zeros(16, dtype=torch.uint8)
    patches: List[Tuple[Any, str, Any]] = [
        (cuda, "is_available", lambda: True),
        (cuda, "device_count", lambda: 1),
        (cuda, "current_device", lambda: 0),
        (cuda, "set_device", _set_device),
        (cuda, "_lazy_init", lambda: None),
        (cuda, "init", lambda: None),
        (cuda, "synchronize", lambda device=None: None),
        (cuda, "get_device_name", lambda device=None: FAKE_NAME),
        (cuda, "get_device_capability", lambda device=None: (9, 0)),
        (cuda, "get_device_properties", lambda device=None: properties),
        (cuda, "is_bf16_supported", lambda including_emulation=True: True),
        (cuda, "get_rng_state", lambda device="cuda": rng_state.clone()),
        (cuda, "get_rng_state_all", lambda: [rng_state.clone()]),
        (cuda, "set_rng_state", lambda new_state, device="cuda": None),
        (cuda, "set_rng_state_all", lambda new_states: None),
        (cuda, "manual_seed", lambda seed: None),
        (cuda, "manual_seed_all", lambda seed: None),
        (cuda, "memory_allocated", lambda device=None: 0),
        (cuda, "max_memory_allocated", lambda device=None: 0),
        (cuda, "reset_peak_memory_stats", lambda device=None: None),
        (cuda, "empty_cache", lambda: None),
        (cuda, "current_stream", _unsupported("streams")),
        (cuda, "default_stream", _unsupported("streams")),
        (cuda, "Stream", _unsupported_class("streams")),
        (cuda, "stream", _unsupported("streams")),
        (cuda, "Event", _unsupported_class("events")),
        (cuda, "CUDAGraph", _unsupported_class("CUDA graphs")),
        (cuda, "graph", _unsupported("CUDA graphs")),
        # torch's accelerator API reports no device: the DataLoader then does not pin (it needs a driver) and the
        # optimizer asks no stream whether it is capturing
        (torch.accelerator, "is_available", lambda: False),
        (torch.accelerator, "current_accelerator", lambda check_available=False: None),
        (torch.nn.functional, "one_hot", _one_hot),
        (torch.Tensor, "to", to),
        (torch.Tensor, "cuda", _make_cuda(to)),
        (torch.Tensor, "pin_memory", lambda self, device=None: self),
        (torch, "tensor", _make_factory(torch.tensor, to)),
        (torch, "as_tensor", _make_factory(torch.as_tensor, to)),
        (torch.utils, "swap_tensors", _swap_tensors),
    ]
    return patches


_ORIGINAL_SWAP = torch.utils.swap_tensors


def _swap_tensors(t1, t2) -> None:
    """``Module.to`` swaps a parameter with its converted tensor (the fake sets that flag, see :func:`fake_cuda`): a
    conversion that involves the fake device swaps; one that does not (a CPU model moved to the CPU, a dtype change on
    the CPU) does what torch does without the flag, ``param.data = converted``, which a parameter holding a weakref (a
    model ``torch.export`` / dynamo traced) survives, as on a real GPU machine."""
    if isinstance(t1, FakeCudaTensor) or isinstance(t2, FakeCudaTensor) or isinstance(t2.data, FakeCudaTensor):
        return _ORIGINAL_SWAP(t1, t2)
    t1.data = t2.data
    return None


@contextlib.contextmanager
def fake_cuda() -> Iterator[None]:
    """The fake CUDA device for the duration of the block (see the module docstring); everything is restored."""
    saved: Dict[Tuple[int, str], Tuple[Any, str, Any]] = {}
    swap = torch.__future__.get_swap_module_params_on_conversion()
    library = torch.library.Library("aten", "IMPL")  # noqa: TOR901 - removed again on exit (_destroy)
    try:
        for owner, name, fake in _patches():
            saved[(id(owner), name)] = (owner, name, getattr(owner, name))
            setattr(owner, name, fake)
        # every CUDA allocation (factories, and whatever C++ makes with CUDA options) becomes a FakeCudaTensor
        library.impl("empty.memory_format", _empty, "CUDA")
        library.impl("empty_strided", _empty_strided, "CUDA")
        # Module.to swaps each parameter with its FakeCudaTensor (the parameter objects stay the same); the default
        # `param.data = ...` would leave a CPU parameter with a wrapper's metadata
        torch.__future__.set_swap_module_params_on_conversion(True)
        yield
    finally:
        torch.__future__.set_swap_module_params_on_conversion(swap)
        library._destroy()
        for owner, name, original in saved.values():
            setattr(owner, name, original)


_ORIGINAL_ONE_HOT = torch.nn.functional.one_hot


def _one_hot(tensor, num_classes=-1):
    if isinstance(tensor, FakeCudaTensor):
        return FakeCudaTensor(_ORIGINAL_ONE_HOT(tensor.elem, num_classes))
    return _ORIGINAL_ONE_HOT(tensor, num_classes)
