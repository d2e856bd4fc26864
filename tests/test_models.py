"""Architecture registry: every registered model builds, trains a step and predicts; seed-specific structure."""
from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from keras import layers  # noqa: E402

from workers.models import create_model, list_models, model_entry  # noqa: E402
from workers.models.soft_attention_layer import SoftAttention  # noqa: E402

# Keras calls np.array(x) on TF tensors, which NumPy 2 flags with a DeprecationWarning per call (noise only).
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

NUM_CLASSES = 3
N_IMAGES = 8
SIZE = 32
# Tracing a train step of a very deep model as a graph costs 20 s (ResNet-50) to over a minute (ResNet-152,
# SE-ResNeXt-101) on two CPU cores, while one eager step on 8 images takes seconds. Deep models therefore
# train eagerly here; the graph-mode path (incl. the XLA-compiled grouped convolution on TF/CPU) is covered by
# the shallow models and by the shallow SE-ResNeXt test below.
EAGER_ABOVE_LAYERS = 100  # ResNet-50/152 and SE-ResNeXt-101 (hundreds of layers); VGG16 has 19


def all_layers(model):
    """Every layer, descending into nested models (keras.applications backbones, the SE-ResNeXt backbone)."""
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from all_layers(layer)


def of_type(model, cls):
    return [layer for layer in all_layers(model) if type(layer) is cls]


def trainable_count(model) -> int:
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


@pytest.fixture(autouse=True)
def _fresh_session():
    keras.utils.set_random_seed(0)
    yield
    keras.backend.clear_session()


def images(n: int, size: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
    y = rng.integers(0, NUM_CLASSES, size=n)
    return x, y


def fit_and_predict(model, x, y, run_eagerly: bool = False):
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", run_eagerly=run_eagerly)
    history = model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    probs = model.predict(x, batch_size=8, verbose=0)
    assert probs.shape == (len(x), NUM_CLASSES)
    assert np.all(probs >= 0) and np.all(probs <= 1)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    return probs


# --------------------------------------------------------------------------------------------------------------
# Every registered architecture (also ones added later)
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in ("se_resnext101", "resnet152") else n
                                  for n in list_models()])  # these two train for 15-24 s each
def test_every_architecture_builds_trains_and_predicts(name):
    entry = model_entry(name)
    assert entry.description, f"{name}: the builder needs a docstring (its first line is the description)"
    size = max(SIZE, entry.min_input_size)
    model = create_model(name, input_shape=(size, size, 3), num_classes=NUM_CLASSES)
    assert isinstance(model, keras.Model)
    assert not getattr(model, "compiled", False), "builders return uncompiled models"
    assert tuple(model.output.shape) == (None, NUM_CLASSES)
    assert model.output.dtype == "float32"
    assert entry.has_lstm == bool(of_type(model, layers.LSTM))
    x, y = images(N_IMAGES, size)
    fit_and_predict(model, x, y, run_eagerly=sum(1 for _ in all_layers(model)) > EAGER_ABOVE_LAYERS)


@pytest.mark.parametrize("name", list_models())
def test_builds_at_min_input_size(name):
    size = model_entry(name).min_input_size
    model = create_model(name, input_shape=(size, size, 3), num_classes=NUM_CLASSES)
    assert tuple(model.output.shape) == (None, NUM_CLASSES)


# --------------------------------------------------------------------------------------------------------------
# Registry behaviour
# --------------------------------------------------------------------------------------------------------------


def test_seed_architectures_are_registered():
    expected = {"cnn", "cnn_lstm", "lstm_cnn", "resnet50", "cnn_basic", "resnet_small", "resnet152",
                "se_resnext101", "vgg16", "cnn_soft_attention"}
    names = list_models()
    assert expected <= set(names)
    assert names == sorted(names)
    assert {model_entry(n).seed for n in expected} == {"000", "001", "002", "003", "004"}


def test_list_models_wildcard():
    resnets = list_models("resnet*")
    assert {"resnet50", "resnet152", "resnet_small"} <= set(resnets)
    assert all(n.startswith("resnet") for n in resnets)
    assert "se_resnext101" not in resnets
    assert list_models("*resnext*") == ["se_resnext101"]
    assert list_models("no_such_architecture*") == []


def test_unknown_architecture_is_a_clear_error():
    with pytest.raises(KeyError, match=r"unknown architecture 'no_such_net' \(valid: .*cnn_basic"):
        create_model("no_such_net", input_shape=(SIZE, SIZE, 3), num_classes=NUM_CLASSES)


@pytest.mark.parametrize("name,size", [("resnet50", 31), ("vgg16", 16), ("cnn_basic", 21), ("se_resnext101", 8)])
def test_input_below_min_input_size_is_a_clear_error(name, size):
    minimum = model_entry(name).min_input_size
    with pytest.raises(ValueError, match=rf"'{name}' needs images of at least {minimum}x{minimum}, got {size}x"):
        create_model(name, input_shape=(size, size, 3), num_classes=NUM_CLASSES)
    # Non-square: the smaller side decides.
    with pytest.raises(ValueError, match="needs images of at least"):
        create_model(name, input_shape=(minimum + 10, size, 3), num_classes=NUM_CLASSES)


def test_cnn_basic_min_input_size_is_tight():
    """Three valid 3x3 convolutions and 2x2 pools: 22 pixels still leave a 1x1 map, 21 do not."""
    builder = model_entry("cnn_basic").builder
    assert builder((22, 22, 3), NUM_CLASSES).get_layer("pool3").output.shape[1:3] == (1, 1)
    with pytest.raises(ValueError):
        builder((21, 21, 3), NUM_CLASSES)


# --------------------------------------------------------------------------------------------------------------
# Seed 000
# --------------------------------------------------------------------------------------------------------------


def test_cnn_structure_seed000():
    model = create_model("cnn", input_shape=(SIZE, SIZE, 3), num_classes=NUM_CLASSES)
    convs = of_type(model, layers.Conv2D)
    assert len(convs) == 3
    assert all(c.filters == 64 and c.get_config()["activation"] == "tanh" for c in convs)
    assert len(of_type(model, layers.MaxPooling2D)) == 3
    assert any(d.units == 32 for d in of_type(model, layers.Dense))
    assert isinstance(model.layers[1], layers.Rescaling)  # min-max scaling of raw pixels inside the model


def test_cnn_lstm_structure_seed000():
    model = create_model("cnn_lstm", input_shape=(SIZE, SIZE, 3), num_classes=NUM_CLASSES)
    (lstm,) = of_type(model, layers.LSTM)
    assert lstm.units == 32 and lstm.return_sequences
    assert [d.rate for d in of_type(model, layers.Dropout)] == [0.2]
    assert any(d.units == 128 and d.get_config()["activation"] == "relu" for d in of_type(model, layers.Dense))
    convs = of_type(model, layers.Conv2D)
    assert len(convs) == 3 and all(c.filters == 64 and c.get_config()["activation"] == "tanh" for c in convs)


# --------------------------------------------------------------------------------------------------------------
# Seed 001 / 002
# --------------------------------------------------------------------------------------------------------------


def test_cnn_basic_matches_seed001_summary():
    """The paper's model summary at 128x128x3 and 9 classes: 896 + 18,496 + 73,856 + 3,211,392 + 1,161."""
    model = create_model("cnn_basic", input_shape=(128, 128, 3), num_classes=9)
    assert [c.filters for c in of_type(model, layers.Conv2D)] == [32, 64, 128]
    assert all(c.get_config()["activation"] == "relu" for c in of_type(model, layers.Conv2D))
    assert model.get_layer("conv1").output.shape[1:] == (126, 126, 32)
    assert model.get_layer("flatten").output.shape[1:] == (25088,)
    assert model.get_layer("fc").units == 128
    assert [d.rate for d in of_type(model, layers.Dropout)] == [0.5]
    assert model.count_params() == 3_305_801


def test_resnet_small_structure_seed002():
    model = create_model("resnet_small", input_shape=(SIZE, SIZE, 3), num_classes=NUM_CLASSES)
    assert len(of_type(model, layers.Add)) == 3
    assert len(of_type(model, layers.MaxPooling2D)) == 3
    assert len(of_type(model, layers.BatchNormalization)) == 6  # main path + shortcut projection per block
    for i in range(1, 4):
        assert isinstance(model.get_layer(f"block{i}_relu"), layers.Activation)


# --------------------------------------------------------------------------------------------------------------
# Seed 003
# --------------------------------------------------------------------------------------------------------------


def test_se_resnext101_default_layout():
    model = create_model("se_resnext101", input_shape=(SIZE, SIZE, 3), num_classes=NUM_CLASSES)
    convs = of_type(model, layers.Conv2D)
    grouped = [c for c in convs if c.groups == 32]
    assert len(grouped) == 3 + 4 + 23 + 3
    assert all(c.kernel_size == (3, 3) for c in grouped)
    # 32 groups x 4 channels per group in the first stage, doubling per stage.
    assert sorted({c.filters for c in grouped}) == [128, 256, 512, 1024]
    # "101" = stem + 33 bottlenecks x 3 convolutions + classifier (shortcut projections and SE not counted).
    main_convs = [c for c in convs if "_proj_" not in c.name]
    assert len(main_convs) + 1 == 101
    se_scales = [layer for layer in of_type(model, layers.Multiply) if layer.name.endswith("_se_scale")]
    assert len(se_scales) == 33
    reduce = [d for d in of_type(model, layers.Dense) if d.name.endswith("_se_reduce")]
    expand = [d for d in of_type(model, layers.Dense) if d.name.endswith("_se_expand")]
    assert len(reduce) == len(expand) == 33
    assert all(r.units * 16 == e.units for r, e in zip(reduce, expand))
    assert all(e.get_config()["activation"] == "sigmoid" for e in expand)


def test_se_resnext101_parameter_count_matches_reference():
    """Trainable weights at 224x224 with 1000 classes equal the reference SE-ResNeXt-101 32x4d (48,955,416)."""
    model = create_model("se_resnext101", input_shape=(224, 224, 3), num_classes=1000)
    assert trainable_count(model) == 48_955_416


@pytest.mark.slow
def test_se_resnext_shallow_variant_trains_in_graph_mode():
    """The graph path with grouped convolutions (XLA-compiled on TF/CPU) on a cheap 1-1-1-1 variant."""
    model = create_model("se_resnext101", input_shape=(SIZE, SIZE, 3), num_classes=NUM_CLASSES, blocks=(1, 1, 1, 1))
    assert len([c for c in of_type(model, layers.Conv2D) if c.groups == 32]) == 4
    x, y = images(N_IMAGES, SIZE)
    fit_and_predict(model, x, y)


def test_se_resnext_depth_and_blocks_params():
    build = model_entry("se_resnext101").builder
    assert len([c for c in of_type(build((SIZE, SIZE, 3), NUM_CLASSES, depth=50), layers.Conv2D)
                if c.groups == 32]) == 16
    with pytest.raises(ValueError, match="depth"):
        build((SIZE, SIZE, 3), NUM_CLASSES, depth=77)
    with pytest.raises(ValueError, match="blocks"):
        build((SIZE, SIZE, 3), NUM_CLASSES, blocks=(1, 1, 1))


def test_resnet152_and_vgg16_backbones():
    resnet = create_model("resnet152", input_shape=(SIZE, SIZE, 3), num_classes=NUM_CLASSES)
    assert len(of_type(resnet, layers.Add)) == 3 + 8 + 36 + 3
    keras.backend.clear_session()
    vgg = create_model("vgg16", input_shape=(SIZE, SIZE, 3), num_classes=NUM_CLASSES)
    assert len(of_type(vgg, layers.Conv2D)) == 13
    assert isinstance(vgg.get_layer("gap"), layers.GlobalAveragePooling2D)
    with_conv6 = create_model("vgg16", input_shape=(SIZE, SIZE, 3), num_classes=NUM_CLASSES, conv6_filters=128)
    assert with_conv6.get_layer("conv6").filters == 128


@pytest.mark.parametrize("name,backbone,params", [
    ("vgg16", "vgg16", {}),
    ("se_resnext101", "se_resnext_backbone", {"blocks": (1, 1, 1, 1)}),
])
def test_weights_path_loads_backbone_weights(tmp_path, name, backbone, params):
    shape = (SIZE, SIZE, 3)
    source = create_model(name, input_shape=shape, num_classes=NUM_CLASSES, **params)
    path = str(tmp_path / "backbone.weights.h5")
    source.get_layer(backbone).save_weights(path)
    keras.utils.set_random_seed(1)  # different initialisation, so equality below comes from the file
    loaded = create_model(name, input_shape=shape, num_classes=NUM_CLASSES, weights_path=path, **params)
    for a, b in zip(source.get_layer(backbone).weights, loaded.get_layer(backbone).weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))


# --------------------------------------------------------------------------------------------------------------
# Seed 004
# --------------------------------------------------------------------------------------------------------------


def test_soft_attention_layer():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 6, 8)).astype("float32")
    layer = SoftAttention(heads=4, aggregate=True, concat_with_x=True)
    out = keras.ops.convert_to_numpy(layer(x))
    assert out.shape == (2, 5, 6, 16)
    np.testing.assert_allclose(out[..., :8], x, rtol=1e-6)  # the input passes through, attended part appended
    maps = keras.ops.convert_to_numpy(layer.attention_maps(x))
    assert maps.shape == (2, 5, 6, 4)
    np.testing.assert_allclose(maps.sum(axis=(1, 2)), 1.0, atol=1e-5)  # softmax over the spatial positions
    # attended = gamma * x * (sum of the head maps), gamma starts at 1
    np.testing.assert_allclose(out[..., 8:], x * maps.sum(axis=-1, keepdims=True), rtol=1e-5, atol=1e-6)
    per_head = SoftAttention(heads=4, aggregate=False, concat_with_x=False)
    assert tuple(per_head(x).shape) == (2, 5, 6, 32)
    assert per_head.compute_output_shape((None, 5, 6, 8)) == (None, 5, 6, 32)
    clone = SoftAttention.from_config(layer.get_config())
    assert (clone.heads, clone.aggregate, clone.concat_with_x) == (4, True, True)


def test_cnn_soft_attention_structure_and_save_roundtrip(tmp_path):
    model = create_model("cnn_soft_attention", input_shape=(SIZE, SIZE, 3), num_classes=NUM_CLASSES)
    attention = model.get_layer("soft_attention")
    assert isinstance(attention, SoftAttention)
    assert len(of_type(model, layers.Conv2D)) == 5
    assert len(of_type(model, layers.BatchNormalization)) == 5
    assert attention.output.shape[-1] == 2 * attention.input.shape[-1]  # features concatenated with attended ones
    assert [d.rate for d in of_type(model, layers.Dropout)] == [0.5, 0.5]
    x, _ = images(4, SIZE)
    path = str(tmp_path / "cnn_sa.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


DEEP = ("resnet50", "resnet152", "se_resnext101", "vgg16")  # builds of several seconds each on two cores


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in DEEP else n for n in list_models()])
def test_last_layer_computes_and_outputs_float32_under_mixed_bfloat16(name):
    """Under mixed bfloat16 the logits Dense and the softmax run in float32, so precision creates no ties."""
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        size = model_entry(name).min_input_size
        model = create_model(name, input_shape=(size, size, 3), num_classes=NUM_CLASSES)
        last = [model.get_layer("logits"), model.get_layer("probs")]
        assert model.layers[-1] is last[1]
        assert [(layer.compute_dtype, layer.variable_dtype) for layer in last] == [("float32", "float32")] * 2
        body = [layer for layer in all_layers(model) if isinstance(layer, layers.Conv2D)]
        assert body and body[0].compute_dtype == "bfloat16"  # the rest of the model is mixed precision
        assert model.output.dtype == "float32"
        if name == "cnn":  # one real forward pass: float32 probabilities that do not tie
            probs = model.predict(images(N_IMAGES, size)[0], verbose=0)
            assert probs.dtype == np.float32
            top = np.sort(probs, axis=1)[:, -2:]
            assert (top[:, 1] > top[:, 0]).all()
    finally:
        keras.mixed_precision.set_global_policy("float32")


# --------------------------------------------------------------------------------------------------------------
# Pretrained weights get their own preprocessing
# --------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["resnet50", "resnet152", "vgg16"])
def test_imagenet_weighted_architectures_declare_imagenet_preprocessing(name):
    from workers.models.registry import model_entry

    assert model_entry(name).preprocessing_for("imagenet") == "caffe"
    assert model_entry(name).preprocessing_for("none") is None
    assert model_entry("cnn").preprocessing_for("imagenet") is None


@pytest.mark.slow
def test_pretrained_resnet50_applies_its_preprocessing(tmp_path):
    """A trial with weights: imagenet (weights from a file this test makes) feeds the backbone ImageNet's input,
    not [0, 1] pixels; the same architecture from scratch keeps the min-max scaling."""
    from orchestrator.spec.grid import expand_grid
    from orchestrator.spec.schema import parse_spec
    from tests.conftest import tiny_spec_dict
    from workers.train import build_model

    shape = (32, 32, 3)
    scratch = create_model("resnet50", input_shape=shape, num_classes=NUM_CLASSES)
    assert "minmax_scale" in [layer.name for layer in scratch.layers]
    path = str(tmp_path / "resnet50_notop.weights.h5")
    scratch.get_layer("resnet50").save_weights(path)
    spec = parse_spec(tiny_spec_dict(dataset={"source": "synthetic", "image_size": [32, 32]},
                                     grid={"architectures": ["resnet50"], "epochs": [1]},
                                     models={"resnet50": {"weights": "imagenet", "weights_path": path}}))
    trial = expand_grid(spec)[0]
    model = build_model(keras, trial, shape, NUM_CLASSES, weights_path=path)
    names = [layer.name for layer in model.layers]
    assert "imagenet_preprocessing" in names and "minmax_scale" not in names
    pixels = np.random.default_rng(0).uniform(0, 255, (2, *shape)).astype("float32")
    expected = keras.applications.resnet50.preprocess_input(pixels.copy())
    got = keras.ops.convert_to_numpy(model.get_layer("imagenet_preprocessing")(pixels))
    np.testing.assert_allclose(got, expected, atol=1e-4)
    for a, b in zip(scratch.get_layer("resnet50").weights, model.get_layer("resnet50").weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
