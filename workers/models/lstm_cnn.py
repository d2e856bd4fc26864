"""Seed 000 LSTM-CNN (its reference [10]): an LSTM reads image rows, convolutions follow."""
from __future__ import annotations


from workers.models.common import classifier_head, image_input
from workers.models.registry import register_model


@register_model("lstm_cnn", min_input_size=8, seed="000", has_lstm=True)
def lstm_cnn(input_shape, num_classes, lstm_units: int = 64, filters: int = 32, dense_units: int = 64,
             dropout: float | None = None):
    """LSTM-CNN: rows as time steps (H steps of W*C features), LSTM (return_sequences), then 2 x Conv2D + pool,
    Flatten, Dense, softmax."""
    import keras
    from keras import layers
    h, w, c = input_shape
    inputs, x = image_input(input_shape)
    x = layers.Reshape((h, w * c), name="rows_as_steps")(x)
    x = layers.LSTM(lstm_units, return_sequences=True, dtype="float32", name="lstm")(x)
    x = layers.Reshape((h, lstm_units, 1), name="to_map")(x)
    for i in range(2):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{i + 1}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{i + 1}")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(dense_units, activation="relu", name="fc")(x)
    if dropout:
        x = layers.Dropout(dropout)(x)
    return keras.Model(inputs, classifier_head(x, num_classes), name="lstm_cnn")
