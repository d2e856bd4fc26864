"""Seed 002 small residual network: three residual "parameter layers" of Conv2D, BatchNorm, MaxPool, ReLU."""
from __future__ import annotations


from workers.models.common import classifier_head, image_input
from workers.models.registry import register_model


def _residual_block(x, filters: int, name: str):
    """Conv3x3 -> BatchNorm -> MaxPool(2) on the main path, a strided 1x1 projection on the shortcut, add, ReLU."""
    from keras import layers
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
    y = layers.BatchNormalization(name=f"{name}_bn")(y)
    y = layers.MaxPooling2D(2, padding="same", name=f"{name}_pool")(y)
    # The block input reaches the block output through a projection that matches channels and resolution.
    s = layers.Conv2D(filters, 1, strides=2, padding="same", use_bias=False, name=f"{name}_shortcut_conv")(x)
    s = layers.BatchNormalization(name=f"{name}_shortcut_bn")(s)
    y = layers.Add(name=f"{name}_add")([y, s])
    return layers.Activation("relu", name=f"{name}_relu")(y)


@register_model("resnet_small", min_input_size=8, seed="002")
def resnet_small(input_shape, num_classes, filters: tuple[int, ...] | list[int] = (32, 64, 128),
                 dropout: float | None = None):
    """Seed 002 ResNet: 3 residual blocks (Conv2D, BatchNorm, MaxPool, ReLU + shortcut), GAP, softmax.

    The paper gives the block recipe but no widths; 32/64/128 filters are this implementation's choice
    (``filters`` overrides them, one block per entry).
    """
    import keras
    from keras import layers
    inputs, x = image_input(input_shape)
    for i, f in enumerate(filters):
        x = _residual_block(x, int(f), name=f"block{i + 1}")
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    return keras.Model(inputs, classifier_head(x, num_classes), name="resnet_small")
