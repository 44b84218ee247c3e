"""Import spandrel where torchvision cannot be imported (the tests' spandrel check; SPAN, SAFMN and SwinIR for
``repsr bench``).

spandrel (the loader behind chaiNNer and ComfyUI) imports three torchvision names when it is
imported: ``InterpolationMode`` and ``rotate`` (for LaMa) and ``normalize`` (for RestoreFormer).
The Compact architecture that our deploy files use needs none of them. PyPI's torchvision does not
load beside a CPU-only torch wheel (``operator torchvision::nms does not exist``), so
scripts/setup_env.sh installs spandrel with ``--no-deps``. If ``torchvision.transforms.functional``
cannot be imported, this module registers a stand-in whose functions raise if ever called; spandrel's
own Compact detection and loading, the thing under test, run unchanged. Where torchvision imports
(a normal machine), the real one is used and this module does nothing.
"""

from __future__ import annotations

import enum
import sys
import types


def _install_torchvision_stand_in() -> None:
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]  # drop a half-imported real torchvision

    def unavailable(*_args, **_kwargs):
        raise RuntimeError("torchvision is not available; this stand-in only lets spandrel import")

    functional = types.ModuleType("torchvision.transforms.functional")
    functional.InterpolationMode = enum.Enum("InterpolationMode", "NEAREST BILINEAR BICUBIC")
    functional.rotate = unavailable
    functional.normalize = unavailable
    transforms = types.ModuleType("torchvision.transforms")
    transforms.functional = functional
    torchvision = types.ModuleType("torchvision")
    torchvision.transforms = transforms
    sys.modules.update({"torchvision": torchvision, "torchvision.transforms": transforms,
                        "torchvision.transforms.functional": functional})


def import_spandrel():
    try:
        import torchvision.transforms.functional  # noqa: F401
    except Exception:  # ImportError, or RuntimeError from a torchvision built for another torch
        _install_torchvision_stand_in()
    import spandrel

    return spandrel
