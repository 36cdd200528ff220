"""The trainer fast path of model loading: which trainers may skip the import, and that it builds the same network."""

from __future__ import annotations

import inspect

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from nnunet_cdl.inference import model_loading
from nnunet_cdl.inference.model_loading import DEFAULT_NETWORK_TRAINERS, build_network, find_trainer_class
from nnunet_cdl.io import read_json


def _uses_default_network(cls: type) -> bool:
    return cls.build_network_architecture is nnUNetTrainer.build_network_architecture


def test_default_network_trainers_are_exactly_those_without_their_own_builder() -> None:
    for name in DEFAULT_NETWORK_TRAINERS:
        assert _uses_default_network(find_trainer_class(name)), name
    ours = {name: cls for name, cls in model_loading._our_trainers().items()
            if inspect.isclass(cls) and issubclass(cls, nnUNetTrainer) and cls is not nnUNetTrainer}
    assert {name for name, cls in ours.items() if _uses_default_network(cls)} == DEFAULT_NETWORK_TRAINERS - {
        "nnUNetTrainer"}


def test_fast_path_builds_the_trainers_network(trained_light_unet) -> None:
    plans = PlansManager(read_json(trained_light_unet.model_folder / "plans.json"))
    configuration = plans.get_configuration("3d_fullres")
    fast = build_network("nnUNetTrainerLightUNet", plans, configuration, 1, 14)
    slow = nnUNetTrainer.build_network_architecture(plans, configuration, 1, 14, enable_deep_supervision=False)
    assert type(fast) is type(slow)
    assert {k: v.shape for k, v in fast.state_dict().items()} == {k: v.shape for k, v in slow.state_dict().items()}
    assert not fast.decoder.deep_supervision
