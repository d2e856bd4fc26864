"""Seed 004 CNN with a soft-attention layer (Datta et al. 2021 / Shaikh et al. 2020)."""
from __future__ import annotations

from workers.models.common import classifier_head, image_input
from workers.models.registry import register_model


@register_model("cnn_soft_attention", min_input_size=32, seed="004")
def cnn_soft_attention(input_shape, num_classes, filters: tuple[int, ...] | list[int] = (32, 64, 128, 256, 512),
                       heads: int = 16, aggregate: bool = True, dense_units: int = 256,
                       dropout: float | None = 0.5):
    """Seed 004 CNN-SA: VGG-style Conv2D/BatchNorm/MaxPool blocks, soft attention, ReLU, Dropout, Dense, softmax.

    Five 3x3 Conv2D (ReLU) + BatchNorm blocks with max-pooling after the first four; the last block feeds the
    soft-attention layer, whose output (input features concatenated with the attended ones) is max-pooled
    (the pooling the seed moves behind the attention), passed through ReLU and Dropout, flattened, then a
    Dense layer and Dropout before the softmax. The seed names the layer types but not the widths: the
    doubling 32..512 filters and Dense 256 are this implementation's choice; 16 heads follow Datta et al.
    """
    import keras
    from keras import layers

    from workers.models.soft_attention_layer import SoftAttention

    inputs, x = image_input(input_shape)
    n = len(filters)
    for i, f in enumerate(filters):
        x = layers.Conv2D(int(f), 3, padding="same", activation="relu", name=f"conv{i + 1}")(x)
        x = layers.BatchNormalization(name=f"bn{i + 1}")(x)
        if i < n - 1:
            x = layers.MaxPooling2D(2, padding="same", name=f"pool{i + 1}")(x)
    x = SoftAttention(heads=heads, aggregate=aggregate, concat_with_x=True, name="soft_attention")(x)
    x = layers.MaxPooling2D(2, padding="same", name=f"pool{n}")(x)
    x = layers.Activation("relu", name="attention_relu")(x)
    if dropout:
        x = layers.Dropout(dropout, name="attention_dropout")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(dense_units, activation="relu", name="fc")(x)
    if dropout:
        x = layers.Dropout(dropout, name="fc_dropout")(x)
    return keras.Model(inputs, classifier_head(x, num_classes), name="cnn_soft_attention")
