"""sd-webui-controlnet's names for our preprocessors, and its control types built from them."""

from __future__ import annotations

from modules.processing.control.control_preprocess import PREPROCESSORS, canonical_module
from modules.processing.control.control_types import CONTROL_TYPES, control_type_entry, control_types

MODULES = {info.alias: (info.name, info.key) for info in PREPROCESSORS.values()}
MODELS = ["control_sd15_canny [aaaa]", "control_v11p_sd15_canny [bbbb]", "control_v11f1p_sd15_depth [cccc]",
          "t2iadapter_color_sd14v1 [dddd]", "my-net [seg0]"]


def test_each_preprocessor_answers_to_sd_webui_controlnets_two_names() -> None:
    hed = PREPROCESSORS["softedge_hed"]
    assert (hed.key, hed.alias) == ("hed", "softedge_hed")
    invert = PREPROCESSORS["invert"]
    assert (invert.key, invert.alias) == ("invert", "invert (from white bg & black line)")
    assert (PREPROCESSORS["depth_midas"].key, PREPROCESSORS["color"].alias) == ("depth", "t2ia_color_grid")
    for info in PREPROCESSORS.values():
        assert canonical_module(info.key) == canonical_module(info.alias) == info.name
    assert len({info.key for info in PREPROCESSORS.values()}) == len({info.alias for info in PREPROCESSORS.values()}) \
        == len(PREPROCESSORS)


def test_a_type_holds_the_preprocessors_and_models_named_after_it() -> None:
    canny = control_type_entry("Canny", MODULES, MODELS)
    assert canny == {"module_list": ["none", "canny"], "model_list": ["None", MODELS[0], MODELS[1]],
                     "default_option": "canny", "default_model": MODELS[1]}  # the v1.1 model is preferred
    soft_edge = control_type_entry("SoftEdge", MODULES, MODELS)
    assert soft_edge["module_list"] == ["none", "softedge_hed", "softedge_hedsafe", "softedge_pidinet",
                                        "softedge_pidisafe"]
    assert soft_edge["model_list"] == ["None"] and soft_edge["default_model"] == "None"
    # The type's other words: "blur" is Tile, "t2ia" T2I-Adapter; a hash is not part of the name.
    assert control_type_entry("Tile", MODULES, MODELS)["module_list"] == ["none", "blur_gaussian", "tile_resample"]
    adapter = control_type_entry("T2I-Adapter", MODULES, MODELS)
    assert adapter["module_list"] == ["none", "t2ia_color_grid"] and adapter["model_list"] == ["None", MODELS[3]]
    assert control_type_entry("Segmentation", MODULES, MODELS)["model_list"] == ["None"]
    assert control_type_entry("Inpaint", MODULES, MODELS) == {"module_list": ["none"], "model_list": ["None"],
                                                              "default_option": "none", "default_model": "None"}


def test_every_type_of_sd_webui_controlnet_is_listed_all_first() -> None:
    listing = control_types(MODULES, MODELS)
    assert list(listing) == list(CONTROL_TYPES) and CONTROL_TYPES[0] == "All" and len(CONTROL_TYPES) == 21
    assert listing["All"] == {"module_list": list(MODULES), "model_list": ["None", *MODELS],
                              "default_option": "none", "default_model": "None"}
    assert listing["Depth"]["module_list"] == ["none", "depth_midas"]
    assert listing["OpenPose"]["default_option"] == "openpose"
