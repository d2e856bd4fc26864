"""SE-ResNeXt (seed 003): ResNeXt bottlenecks with grouped 3x3 convolutions and squeeze-and-excitation, by hand.

keras.applications has no ResNeXt, so the network is written out here following Xie et al. (ResNeXt, 32x4d
template) and Hu et al. (SE blocks, reduction 16): a 7x7/2 stem and max-pool, then four stages of bottleneck
blocks ``1x1 -> grouped 3x3 (stride) -> 1x1 -> SE -> + shortcut -> ReLU`` with output widths 256/512/1024/2048.
"""
from __future__ import annotations


from workers.models.common import classifier_head, image_input
from workers.models.registry import register_model

# Blocks per stage for the usual depths (3 layers per bottleneck + stem + classifier).
STAGE_BLOCKS: dict[int, tuple[int, int, int, int]] = {
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
}
_BN_EPS = 1e-5


def _conv_bn(x, filters: int, kernel: int, *, strides: int = 1, groups: int = 1, relu: bool = True, name: str):
    from keras import layers
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", groups=groups, use_bias=False,
                      name=f"{name}_conv")(x)
    x = layers.BatchNormalization(epsilon=_BN_EPS, name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x) if relu else x


def squeeze_excite(x, reduction: int = 16, name: str = "se"):
    """Squeeze-and-excitation: GAP -> Dense(C/r, ReLU) -> Dense(C, sigmoid) -> channel-wise rescale of ``x``."""
    from keras import layers
    channels = x.shape[-1]
    s = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_squeeze")(x)
    s = layers.Dense(max(1, channels // reduction), activation="relu", name=f"{name}_reduce")(s)
    s = layers.Dense(channels, activation="sigmoid", name=f"{name}_expand")(s)
    return layers.Multiply(name=f"{name}_scale")([x, s])


def _bottleneck(x, planes: int, *, strides: int, cardinality: int, base_width: int, reduction: int, name: str):
    from keras import layers
    width = cardinality * base_width * planes // 64  # 32x4d: 128, 256, 512, 1024
    out_channels = planes * 4
    shortcut = x
    if strides != 1 or x.shape[-1] != out_channels:
        shortcut = _conv_bn(x, out_channels, 1, strides=strides, relu=False, name=f"{name}_proj")
    y = _conv_bn(x, width, 1, name=f"{name}_1")
    y = _conv_bn(y, width, 3, strides=strides, groups=cardinality, name=f"{name}_2")
    y = _conv_bn(y, out_channels, 1, relu=False, name=f"{name}_3")
    y = squeeze_excite(y, reduction, name=f"{name}_se")
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.Activation("relu", name=f"{name}_out")(y)


def se_resnext_backbone(input_shape, blocks=STAGE_BLOCKS[101], cardinality: int = 32, base_width: int = 4,
                        reduction: int = 16, name: str = "se_resnext_backbone") -> keras.Model:
    """Feature extractor (no pooling, no head) as its own Model so ``load_weights`` can target it alone."""
    import keras
    from keras import layers
    if len(blocks) != 4 or any(int(b) < 1 for b in blocks):
        raise ValueError(f"blocks must be four positive stage lengths, got {blocks!r}")
    inputs = keras.Input(shape=input_shape, name="features_in")
    x = _conv_bn(inputs, 64, 7, strides=2, name="stem")
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    for stage, (planes, n_blocks) in enumerate(zip((64, 128, 256, 512), blocks)):
        for b in range(int(n_blocks)):
            strides = 2 if (b == 0 and stage > 0) else 1
            x = _bottleneck(x, planes, strides=strides, cardinality=cardinality, base_width=base_width,
                            reduction=reduction, name=f"stage{stage + 1}_block{b + 1}")
    return keras.Model(inputs, x, name=name)


@register_model("se_resnext101", min_input_size=32, seed="003")
def se_resnext101(input_shape, num_classes, weights_path: str | None = None, dropout: float | None = None,
                  depth: int = 101, blocks: tuple[int, ...] | list[int] | None = None, cardinality: int = 32,
                  base_width: int = 4, reduction: int = 16):
    """SE-ResNeXt-101 (32x4d): grouped-conv bottlenecks with SE blocks, stages [3, 4, 23, 3], GAP, softmax.

    ``depth`` (50/101/152) or an explicit ``blocks`` list of four stage lengths builds other depths (tests use
    ``blocks=(1, 1, 1, 1)``). ``weights_path`` is a local weights file for the backbone (never downloaded).
    """
    import keras
    from keras import layers
    if blocks is None:
        if depth not in STAGE_BLOCKS:
            raise ValueError(f"depth must be one of {sorted(STAGE_BLOCKS)} (or pass blocks=...), got {depth}")
        blocks = STAGE_BLOCKS[depth]
    inputs, x = image_input(input_shape)
    backbone = se_resnext_backbone(input_shape, tuple(int(b) for b in blocks), cardinality, base_width, reduction)
    if weights_path:
        backbone.load_weights(weights_path)
    x = backbone(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    return keras.Model(inputs, classifier_head(x, num_classes), name="se_resnext101")
