"""Seed 000 baseline CNN: three Conv2D(64, tanh) + max-pool blocks, dense 32."""
from __future__ import annotations


from workers.models.common import classifier_head, image_input
from workers.models.registry import register_model


@register_model("cnn", min_input_size=8, seed="000")
def cnn(input_shape, num_classes, filters: int = 64, dense_units: int = 32, activation: str = "tanh", dropout: float | None = None):
    """Seed 000 CNN: 3 x (Conv2D 64 tanh, MaxPool), Flatten, Dense 32, softmax."""
    import keras
    from keras import layers
    inputs, x = image_input(input_shape)
    for i in range(3):
        x = layers.Conv2D(filters, 3, padding="same", activation=activation, name=f"conv{i + 1}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{i + 1}")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(dense_units, activation="relu", name="fc")(x)
    if dropout:
        x = layers.Dropout(dropout)(x)
    return keras.Model(inputs, classifier_head(x, num_classes), name="cnn")
