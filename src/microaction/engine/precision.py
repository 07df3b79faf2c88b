"""Numeric precision of a run: which one a device runs natively, and the autocast context.

``run.precision`` (and the face trainer's ``precision``) takes:

- ``auto`` (the default): bf16 autocast where the device runs bf16 natively — a CUDA GPU with
  bf16 support (compute capability 8.0 and up), a CPU whose capabilities PyTorch reports as
  AVX-512 BF16 or AMX-BF16 (x86) or BF16 (Arm) — and fp32 everywhere else;
- ``fp32``: no autocast;
- ``bf16``: bf16 autocast, refused on a CPU without native bf16: PyTorch emulates it there, and a
  B-MoE training step at paper size took 60× the fp32 step on such a CPU (an AVX2 EPYC);
- ``bf16!``: bf16 autocast whatever the device (forced: for checking bf16 behaviour on a CPU).

``resolve_precision(requested, device)`` gives a ``Precision`` (the requested value, the one used,
and why); ``autocast(device, precision)`` the matching context. Training refuses an unsupported
request before it writes anything; inference (``for_inference=True``) runs a run's ``bf16`` in
fp32 where it is not native, and says so (``Precision.reason``), since evaluating on another
machine than the one that trained is common.

``torch.backends.cpu.get_cpu_capability()`` names only the widest vector ISA PyTorch dispatches
to (``AVX2``, ``AVX512``, ...), which says nothing about bf16 (an AVX-512 CPU may lack
AVX512_BF16); ``torch.cpu.get_capabilities()`` (PyTorch ≥ 2.9) lists the instruction sets, and
``/proc/cpuinfo`` flags are read where it is missing. The environment variable ``MAR_CPU_BF16``
(``1`` native, ``0`` emulated) replaces the detection (the test suite sets 0, so ``auto`` is fp32
on every CPU there and results do not depend on the machine). (torch is imported on first use: the
command line's argument parsers read ``PRECISIONS`` from here.)
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = [
    "CPU_BF16_ENV",
    "PRECISIONS",
    "Precision",
    "PrecisionError",
    "autocast",
    "check_precision_name",
    "cpu_bf16_features",
    "cpu_capabilities",
    "native_bf16",
    "resolve_precision",
]

PRECISIONS = ("auto", "fp32", "bf16", "bf16!")
CPU_BF16_ENV = "MAR_CPU_BF16"  # 1 / 0: treat this CPU as bf16-native or not (replaces the detection)

# CPU capability names (``torch.cpu.get_capabilities()`` keys) that mean hardware bf16 arithmetic
_CPU_BF16 = {
    "amx_bf16": "AMX-BF16",
    "avx512_bf16": "AVX-512 BF16",
    "bf16": "Arm BF16",
    "sve_bf16": "Arm SVE BF16",
}
# the same, as Linux /proc/cpuinfo flags
_CPUINFO_FLAGS = {"amx_bf16": "amx_bf16", "avx512_bf16": "avx512_bf16", "bf16": "bf16", "svebf16": "sve_bf16"}


class PrecisionError(ValueError):
    """A precision the device cannot run well was asked for (or an unknown name)."""


@dataclass(frozen=True)
class Precision:
    requested: str  # as configured: auto | fp32 | bf16 | bf16!
    used: str  # fp32 | bf16
    reason: str  # one line: why ``used`` (shown in logs)

    @property
    def bf16(self) -> bool:
        return self.used == "bf16"

    def describe(self) -> str:
        req = "" if self.requested == self.used else f" (requested {self.requested})"
        return f"precision {self.used}{req}: {self.reason}"


def check_precision_name(value: str, where: str = "precision") -> str:
    if value not in PRECISIONS:
        raise PrecisionError(f"{where} must be one of {', '.join(PRECISIONS)}, got {value!r}")
    return value


def cpu_capabilities() -> Mapping[str, Any]:
    """The CPU's instruction-set flags as PyTorch reports them (``torch.cpu.get_capabilities``),
    else the Linux ``/proc/cpuinfo`` flags under the same names; ``{}`` when neither is known."""
    import torch

    get = getattr(torch.cpu, "get_capabilities", None)
    if get is not None:
        try:
            return dict(get())
        except Exception:  # a CPU cpuinfo cannot describe: fall back to the kernel's flags
            pass
    caps: dict[str, Any] = {"architecture": platform.machine()}
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return caps
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags = set(value.split())
            caps.update({name: True for flag, name in _CPUINFO_FLAGS.items() if flag in flags})
            break
    return caps


def cpu_bf16_features(caps: Mapping[str, Any] | None = None) -> list[str]:
    """Readable names of the CPU's hardware bf16 features (empty: bf16 is emulated)."""
    caps = cpu_capabilities() if caps is None else caps
    return [label for key, label in _CPU_BF16.items() if caps.get(key)]


def _cpu_name(caps: Mapping[str, Any]) -> str:
    import torch

    name = str(caps.get("cpu_name") or platform.processor() or platform.machine() or "this CPU")
    isa = torch.backends.cpu.get_cpu_capability()
    return f"{name} ({isa})"


def native_bf16(device: torch.device | str, caps: Mapping[str, Any] | None = None) -> tuple[bool | None, str]:
    """Whether ``device`` runs bf16 natively: True, False, or None (unknown device type); and why."""
    import torch

    device = torch.device(device)
    if device.type == "cpu":
        forced = os.environ.get(CPU_BF16_ENV, "").strip() if caps is None else ""
        if forced in ("0", "1"):
            if forced == "1":
                return True, f"this CPU is declared bf16-native ({CPU_BF16_ENV}=1)"
            return False, f"this CPU is declared without native bf16 ({CPU_BF16_ENV}=0): PyTorch emulates bf16 there"
        caps = cpu_capabilities() if caps is None else caps
        feats = cpu_bf16_features(caps)
        if feats:
            return True, f"{_cpu_name(caps)} has {' and '.join(feats)}"
        return False, f"{_cpu_name(caps)} has no AVX-512 BF16 / AMX-BF16: PyTorch emulates bf16 there"
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return False, "CUDA is not available"
        index = device.index if device.index is not None else torch.cuda.current_device()
        name = torch.cuda.get_device_name(index)
        major, minor = torch.cuda.get_device_capability(index)
        if major >= 8:
            return True, f"{name} (compute capability {major}.{minor}) has bf16 units"
        return False, f"{name} (compute capability {major}.{minor} < 8.0) has no native bf16"
    return None, f"bf16 support of {device.type} devices is not known here"


def resolve_precision(
    requested: str,
    device: torch.device | str,
    *,
    for_inference: bool = False,
    caps: Mapping[str, Any] | None = None,
) -> Precision:
    """The precision a run on ``device`` uses for ``requested`` (see the module doc).

    Raises ``PrecisionError`` for an unknown name, and for ``bf16`` on a device known to lack
    native bf16 unless ``for_inference`` (then fp32, with the reason). ``caps`` replaces the CPU's
    capability flags (tests)."""
    check_precision_name(requested)
    if requested == "fp32":
        return Precision(requested, "fp32", "as configured")
    if requested == "bf16!":
        return Precision(requested, "bf16", "forced (bf16!)")
    native, why = native_bf16(device, caps)
    if requested == "auto":
        return Precision(requested, "bf16" if native else "fp32", why)
    # requested == "bf16"
    if native is not False:
        return Precision(requested, "bf16", why)
    if for_inference:
        return Precision(requested, "fp32", f"{why}; running in fp32 (bf16! forces bf16)")
    raise PrecisionError(
        f"precision bf16 was asked for, but {why}: a training step would take tens of times longer "
        "than in fp32 (60× for B-MoE at paper size on an AVX2 CPU). Use precision auto (bf16 where "
        "it is native, fp32 elsewhere) or fp32; bf16! forces bf16 anyway."
    )


def autocast(device: torch.device | str, precision: Precision | str) -> AbstractContextManager[Any]:
    """bf16 autocast on ``device`` when ``precision`` (a ``Precision`` or ``"fp32"``/``"bf16"``)
    uses bf16, else a null context."""
    import torch

    used = precision.used if isinstance(precision, Precision) else precision
    if used not in ("fp32", "bf16"):
        raise PrecisionError(f"autocast needs a resolved precision (fp32 or bf16), got {used!r}")
    if used == "bf16":
        return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
    return nullcontext()
