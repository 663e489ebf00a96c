"""sd-webui-controlnet's control types ("Canny", "Depth", ...): the preprocessors and models each
one offers, in the shape of its ``GET /controlnet/control_types``.

As in sd-webui-controlnet, a model belongs to a type when its name holds the type's name or one
of that type's other words ("normal" for "NormalMap", "blur" for "Tile" ...); here the
preprocessors are sorted the same way, by their names. "none" and "None" are in every type.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["CONTROL_TYPES", "control_type_entry", "control_types", "type_keywords"]

#: sd-webui-controlnet's control types, "All" first, then sorted as it lists them.
CONTROL_TYPES = ("All", "Canny", "Depth", "IP-Adapter", "Inpaint", "Instant-ID", "InstructP2P", "Lineart", "MLSD",
                 "NormalMap", "OpenPose", "Recolor", "Reference", "Revision", "Scribble", "Segmentation", "Shuffle",
                 "SoftEdge", "SparseCtrl", "T2I-Adapter", "Tile")
# The other words that put a name into a type (sd-webui-controlnet's filter aliases), by lower-case type.
_OTHER_WORDS: Mapping[str, tuple[str, ...]] = {
    "instructp2p": ("ip2p",), "segmentation": ("seg",), "normalmap": ("normal",),
    "t2i-adapter": ("t2i_adapter", "t2iadapter", "t2ia"), "ip-adapter": ("ip_adapter", "ipadapter"),
    "openpose": ("densepose",), "instant-id": ("instant_id", "instantid"), "scribble": ("sketch",), "tile": ("blur",),
}


def type_keywords(control_type: str) -> frozenset[str]:
    """The lower-case words that mark a preprocessor or model name as of ``control_type``."""
    key = control_type.lower()
    return frozenset({key, *_OTHER_WORDS.get(key, ())})


def control_type_entry(control_type: str, modules: Mapping[str, Sequence[str]], models: Sequence[str],
                       ) -> dict[str, Any]:
    """One type's ``module_list``, ``model_list``, ``default_option`` and ``default_model``.

    Args:
        control_type: one of ``CONTROL_TYPES`` (any other name works the same way).
        modules: each preprocessor's listed name -> the names it is known by (all are matched);
            "none" first.
        models: the installed ControlNets as ``name [hash]``, without "None".
    """
    if control_type.lower() == "all":
        return {"module_list": list(modules), "model_list": ["None", *models], "default_option": "none",
                "default_model": "None"}
    words = type_keywords(control_type)

    def matches(*names: str) -> bool:
        return any(word in name.lower() for name in names for word in words)

    module_list = [label for label, names in modules.items() if label == "none" or matches(label, *names)]
    # The hash in "name [hash]" is not part of the name.
    model_list = ["None", *(title for title in models if matches(title.split(" [")[0]))]
    # The first model of version 1.1 ("control_v11p_sd15_canny") when there is one, as sd-webui-controlnet.
    default_model = "None" if len(model_list) == 1 else next(
        (title for title in model_list[1:] if "11" in title.split("[")[0]), model_list[1])
    return {"module_list": module_list, "model_list": model_list,
            "default_option": module_list[1] if len(module_list) > 1 else "none", "default_model": default_model}


def control_types(modules: Mapping[str, Sequence[str]], models: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Every type of ``CONTROL_TYPES`` -> its ``control_type_entry``."""
    return {control_type: control_type_entry(control_type, modules, models) for control_type in CONTROL_TYPES}
