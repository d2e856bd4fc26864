"""Seed 000 proposed model: CNN feature extractor feeding an LSTM over spatial positions."""
from __future__ import annotations


from workers.models.common import classifier_head, image_input
from workers.models.registry import register_model


@register_model("cnn_lstm", min_input_size=8, seed="000", has_lstm=True)
def cnn_lstm(input_shape, num_classes, filters: int = 64, lstm_units: int = 32, dropout: float | None = 0.2,
             dense_units: int = 128, activation: str = "tanh"):
    """Seed 000 CNN-LSTM: 3 x (Conv2D 64 tanh, MaxPool), reshape to a sequence, LSTM 32 (return_sequences),
    Dropout 0.2, Flatten, Dense 128 relu, softmax."""
    import keras
    from keras import layers
    inputs, x = image_input(input_shape)
    for i in range(3):
        x = layers.Conv2D(filters, 3, padding="same", activation=activation, name=f"conv{i + 1}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{i + 1}")(x)
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    x = layers.Reshape((h * w, c), name="to_sequence")(x)
    # LSTM stays float32 under mixed precision (ARCHITECTURE.md, "Backends"): bfloat16 inside the LSTM failed on JAX.
    x = layers.LSTM(lstm_units, return_sequences=True, dtype="float32", name="lstm")(x)
    if dropout:
        x = layers.Dropout(dropout)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(dense_units, activation="relu", name="fc")(x)
    return keras.Model(inputs, classifier_head(x, num_classes), name="cnn_lstm")
