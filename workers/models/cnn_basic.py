"""Seed 001 basic CNN: Conv2D 32/64/128 (3x3, ReLU, valid padding) each followed by max-pooling, Dense 128."""
from __future__ import annotations


from workers.models.common import classifier_head, image_input
from workers.models.registry import register_model


# Three (valid 3x3 conv, 2x2 pool) stages need at least 22 pixels: 22 -> 20 -> 10 -> 8 -> 4 -> 2 -> 1.
@register_model("cnn_basic", min_input_size=22, seed="001")
def cnn_basic(input_shape, num_classes, filters: tuple[int, ...] | list[int] = (32, 64, 128), dense_units: int = 128,
              dropout: float | None = 0.5, activation: str = "relu"):
    """Seed 001 CNN: Conv2D 32/64/128 (3x3, ReLU) + MaxPool each, Flatten, Dense 128 ReLU, Dropout 0.5, softmax.

    Layer for layer the Sequential model of the paper (its summary: 126x126x32 after the first convolution of
    a 128x128 input, i.e. valid padding); only the min-max scaling in front comes from ``image_input``.
    """
    import keras
    from keras import layers
    inputs, x = image_input(input_shape)
    for i, f in enumerate(filters):
        x = layers.Conv2D(int(f), 3, padding="valid", activation=activation, name=f"conv{i + 1}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{i + 1}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(dense_units, activation="relu", name="fc")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    return keras.Model(inputs, classifier_head(x, num_classes), name="cnn_basic")
