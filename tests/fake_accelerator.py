"""A fake CUDA device for CPU-only machines: catches the device mistakes CI cannot otherwise see.

No GPU runs the tests, so a tensor made on the host in a CUDA code path (``torch.zeros(n)`` without
``device=``, a ``torch.as_tensor`` of a numpy array combined with the model's output), ``.numpy()`` on a
device tensor without ``.cpu()``, or a CPU index tensor used with ``index_select`` on the device would pass
every test here and fail on a GPU. :func:`fake_cuda` makes ``device="cuda"`` (and ``"auto"``) resolve to
``torch.device("cuda", 0)`` and runs the code under a :class:`torch.overrides.TorchFunctionMode` in which:

* a tensor made with ``device="cuda"``, moved there (``.to("cuda")``, ``.to(other)``, ``.cuda()``), or
  computed from such tensors is a CPU tensor of the class :class:`OnDevice` and reports ``device`` cuda:0;
  ``.cpu()`` / ``.to("cpu")`` give a plain CPU tensor again; ``nn.Module.to("cuda")`` moves parameters and
  buffers (with ``torch.__future__.set_overwrite_module_params_on_conversion``, restored afterwards);
* an op that mixes device tensors with host tensors of one or more dimensions raises, as CUDA does (0-dim
  host tensors are allowed, as CUDA allows CPU scalars; a device tensor indexed by host indices too);
* ``.numpy()`` / ``np.asarray`` of a device tensor raise, as CUDA's do.

The numbers are the CPU's: results can be compared with a CPU run. What it cannot check: functions torch
does not route through ``__torch_function__`` (``torch.load``'s ``map_location``, ``torch.cuda.*``), and ops
nested inside one call (only the outermost call's arguments are compared).
"""
from __future__ import annotations

import contextlib
import copy

import torch
from torch.overrides import TorchFunctionMode
from torch.utils import _pytree as pytree

FAKE = torch.device("cuda", 0)


class OnDevice(torch.Tensor):
    """A host tensor standing for one on the fake CUDA device (its class is its location)."""
    __torch_function__ = torch._C._disabled_torch_function_impl


def _to_device(device):
    """True for the fake CUDA device, False for the host, None when no device is named."""
    if device is None:
        return None
    if isinstance(device, int):
        return True
    return torch.device(device).type == "cuda"


class DeviceMismatch(RuntimeError):
    """What CUDA raises where a device tensor meets a host one ("Expected all tensors to be on the same
    device")."""


class FakeCuda(TorchFunctionMode):
    """The mode :func:`fake_cuda` runs code under (see the module docstring)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        name = getattr(func, "__name__", str(func))
        getter = getattr(func, "__self__", None) if name == "__get__" else None
        if getter is torch.Tensor.device:
            return FAKE if isinstance(args[0], OnDevice) else torch.device("cpu")
        if getter is torch.Tensor.is_cuda:
            return isinstance(args[0], OnDevice)
        if getter is not None:                      # .shape, .dtype as they are; .T, .grad, .data where it is
            out = func(*args, **kwargs)
            if isinstance(out, torch.Tensor) and isinstance(args[0], OnDevice):
                return out.as_subclass(OnDevice)
            return out
        if func in (torch.Tensor.numpy, torch.Tensor.__array__) and isinstance(args[0], OnDevice):
            raise TypeError("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to copy the "
                            "tensor to host memory first.")
        if func is torch.Tensor.__deepcopy__ and isinstance(args[0], OnDevice):
            src, memo = args[0], args[1]
            new = src.detach().clone().as_subclass(OnDevice).requires_grad_(src.requires_grad)
            new.__dict__.update(copy.deepcopy(src.__dict__, memo))
            memo[id(src)] = new
            return new
        target = None                       # where the result goes: None = where its inputs are
        if kwargs.get("device") is not None:
            target = _to_device(kwargs["device"])
            kwargs["device"] = "cpu"
        if func is torch.Tensor.to:
            rest = list(args[1:])
            for i, a in enumerate(rest):
                if isinstance(a, (str, torch.device)):
                    target, rest[i] = _to_device(a), "cpu"
                elif isinstance(a, torch.Tensor):
                    target, rest[i] = isinstance(a, OnDevice), a.dtype
            args = (args[0], *rest)
        elif func is torch.Tensor.cpu:
            target = False
        elif func is torch.Tensor.cuda:
            target, func, args, kwargs = True, torch.Tensor.clone, args[:1], {}
        if func is torch.broadcast_tensors:          # views of each input where it is (no device check)
            return tuple(o.as_subclass(type(t)) for o, t in zip(func(*args, **kwargs), args))
        tensors = [t for t in pytree.tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        on = [isinstance(t, OnDevice) for t in tensors]
        if (any(on) and not all(on) and target is None
                and func is not torch.Tensor.copy_ and not name.startswith("_has_")):
            self._check_mixed(name, args, tensors, on)
        out = func(*args, **kwargs)
        inplace = bool(name.endswith("_") and not name.endswith("__") and args and tensors
                       and tensors[0] is args[0])
        if inplace or func is torch.Tensor.copy_ or kwargs.get("out") is not None:
            return out                      # stays where its destination is
        if not any(isinstance(t, torch.Tensor) for t in pytree.tree_leaves(out)):
            return out                      # numbers, sizes, lists: as they are
        on_out = target if target is not None else any(on)
        if target is not None and out is args[0] and on_out != isinstance(out, OnDevice):
            out = out.clone()               # a transfer copies (and keeps the autograd graph)

        def place(t):
            if not isinstance(t, torch.Tensor):
                return t
            if not on_out:
                return t.as_subclass(torch.Tensor) if isinstance(t, OnDevice) else t
            if isinstance(t, OnDevice):
                return t
            if t.is_leaf and t.requires_grad:       # a factory's leaf stays a leaf
                return t.detach().as_subclass(OnDevice).requires_grad_(True)
            return t.as_subclass(OnDevice)
        return pytree.tree_map(place, out)

    @staticmethod
    def _check_mixed(name, args, tensors, on):
        host = [t for t, o in zip(tensors, on) if not o and t.dim() > 0]
        if name in ("__getitem__", "__setitem__") and isinstance(args[0], OnDevice):
            # host index tensors are fine for a device tensor; a host value assigned into it is not
            value = args[2] if name == "__setitem__" else None
            host = [value] if any(t is value for t in host) else []
        if host:
            raise DeviceMismatch(f"Expected all tensors to be on the same device, but found at least two "
                                 f"devices, cuda:0 and cpu! ({name} with host tensors of shape "
                                 f"{[tuple(t.shape) for t in host]})")


@contextlib.contextmanager
def fake_cuda(monkeypatch):
    """Run the block with ``device="cuda"`` (and "auto", "cuda:N") resolving to the fake CUDA device."""
    import smnet_sps.neural as neural
    import smnet_sps.ssp_torch as ssp_torch

    real = neural.resolve_device

    def resolve(device="auto"):
        if device is None or device == "auto" or str(device).startswith("cuda"):
            return torch.device("cuda")
        return real(device)
    monkeypatch.setattr(neural, "resolve_device", resolve)
    monkeypatch.setattr(ssp_torch, "resolve_device", resolve)        # imported by name there
    before = torch.__future__.get_overwrite_module_params_on_conversion()
    torch.__future__.set_overwrite_module_params_on_conversion(True)
    try:
        with FakeCuda():
            yield
    finally:
        torch.__future__.set_overwrite_module_params_on_conversion(before)
