"""The shipped accelerate configs load with accelerate's own parser and set the distributed type their names give."""

from pathlib import Path

import pytest
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.utils import DistributedType

CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "accelerate"


@pytest.mark.parametrize(
    "name, distributed_type, zero_stage",
    [
        ("ddp", DistributedType.MULTI_GPU, None),
        ("fsdp", DistributedType.FSDP, None),
        ("zero2", DistributedType.DEEPSPEED, 2),
        ("zero3", DistributedType.DEEPSPEED, 3),
    ],
)
def test_config_loads(name, distributed_type, zero_stage):
    config = load_config_from_file(str(CONFIGS / f"{name}.yaml"))

    assert config.distributed_type == distributed_type
    assert config.mixed_precision == "bf16"
    assert config.num_processes == 8
    assert config.use_cpu is False
    if zero_stage is not None:
        assert config.deepspeed_config["zero_stage"] == zero_stage


def test_fsdp_keeps_original_parameters_for_lora():
    config = load_config_from_file(str(CONFIGS / "fsdp.yaml"))

    assert config.fsdp_config["fsdp_use_orig_params"] is True
    assert config.fsdp_config["fsdp_sharding_strategy"] == "FULL_SHARD"


def test_only_the_four_configs_ship():
    assert sorted(path.stem for path in CONFIGS.glob("*.yaml")) == ["ddp", "fsdp", "zero2", "zero3"]
