"""A device kind, a dataset source and an architecture registered from outside the product, as a user's own
module would: through the public registries only (``workers.accelerators``, ``workers.data``,
``workers.models``). Each ``register_*`` is idempotent, so it can also run as Ray's
``worker_process_setup_hook`` in every worker. Pickled by value: workers need not import this module."""
from __future__ import annotations

import cloudpickle
import numpy as np

cloudpickle.register_pickle_by_value(__import__(__name__, fromlist=["_"]))

NPU = "npu"  # a simulated accelerator offered as the Ray resource "NPU"
TINY_SOURCE = "tiny_arrays"
TINY_CLASSES = ["benign", "melanoma"]
TINY_ARCH = "tiny_dense"


def register_npu() -> None:
    """Device kind ``npu``: Ray resource ``NPU``, driven by TensorFlow, no backend detects it (it is simulated)."""
    from workers.accelerators import ACCELERATORS, Accelerator, register_accelerator

    if NPU not in ACCELERATORS:
        register_accelerator(Accelerator(
            name=NPU, resource="NPU", visibility_env="NPU_VISIBLE_DEVICES", install_hint="pip install npu-runtime",
            backends=("tensorflow",), steps_per_execution=4,
            node_type={"resources": {"CPU": 1, "NPU": 1}, "framework": "tensorflow", "price_per_hour": 0.5}))


def _tiny_arrays(settings: dict):
    from workers.data.sources import LoadedDataset

    size = tuple(settings.get("image_size", (16, 16)))
    n = int(settings.get("samples_per_class", 12))
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(len(TINY_CLASSES)), n)
    images = rng.integers(0, 255, (len(labels), *size, 3), dtype=np.uint8)
    images[labels == 1] //= 2  # something to learn
    return LoadedDataset(images=images, labels=labels, class_names=list(TINY_CLASSES),
                         ids=[f"img{i}" for i in range(len(labels))])


def _refuse_odd_sizes(settings: dict) -> None:
    from workers.data.sources import DatasetError

    if list(settings.get("image_size", (16, 16)))[0] % 2:
        raise DatasetError("dataset.image_size: tiny_arrays makes even sizes only")


def register_tiny_source(with_counts: bool = True) -> None:
    """Source ``tiny_arrays`` (random arrays, two classes, no path); without counts as ``tiny_uncounted``."""
    from workers.data import register_source
    from workers.data.sources import SOURCES

    name = TINY_SOURCE if with_counts else "tiny_uncounted"
    if name not in SOURCES:
        register_source(name, classes=TINY_CLASSES, check=_refuse_odd_sizes, needs_path=False,
                        images=(lambda s: 2.0 * int(s.get("samples_per_class", 12))) if with_counts else None)(
            _tiny_arrays)


def _tiny_dense(input_shape, num_classes, units: int = 4):
    """A flatten-dense model of a few weights."""
    import keras

    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(units, activation="relu")(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(x))


def register_tiny_arch() -> None:
    """Architecture ``tiny_dense``."""
    from workers.models import ARCHITECTURES, register_model

    if TINY_ARCH not in ARCHITECTURES:
        register_model(TINY_ARCH, min_input_size=8)(_tiny_dense)


def register_all() -> None:
    """Every plug-in above (Ray's ``worker_process_setup_hook`` in the tests)."""
    register_npu()
    register_tiny_source()
    register_tiny_arch()
