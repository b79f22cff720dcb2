"""The values of the choice params that the configs share with the code acting on them.

Each `Literal` is written once and is at the same time a click choice (`cli.py`), a config
rule (`config.py`) and the type the torch modules take (data, device, image_folder, noise,
training.loop). It lives here, apart from those modules and free of torch, so that the CLI
builds its options (and `--help`) without importing torch.
"""

from typing import Literal, get_args

Dataset = Literal["mnist", "fashion-mnist", "folder"]  # folder: the images under data_dir
Channels = Literal["auto", "1", "3"]  # an image folder's: auto is 3 when any image is colour
ImagePolicy = Literal["resize", "center_crop", "patches"]  # how a folder's images become squares
Noise = Literal["gaussian", "uniform", "salt_pepper", "mask"]
NOISE_MODELS: tuple[Noise, ...] = get_args(Noise)
DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"  # what `device` takes (device.resolve_device reads it)
Precision = Literal["auto", "fp32", "bf16", "fp16"]
Schedule = Literal["onecycle", "cosine"]  # the learning-rate schedule
