"""Seed 004 CNN with a soft-attention layer (Datta et al. 2021 / Shaikh et al. 2020)."""
from __future__ import annotations

import keras
from keras import layers, ops

from workers.models.common import classifier_head, image_input
from workers.models.registry import register_model


@keras.saving.register_keras_serializable(package="skinlesion")
class SoftAttention(layers.Layer):
    """Soft attention over spatial positions (seed 004, eq. 6).

    ``K = heads`` 3x3 kernels spanning all input channels give ``K`` attention logit maps; each map is
    softmax-normalised over the H*W positions. With ``aggregate`` the maps are summed into one map ``zeta``
    that scales every channel (``gamma * x * zeta``, ``gamma`` learnable); without it every map scales every
    channel (``heads * C`` channels). With ``concat_with_x`` the attended features are concatenated with the
    input (the seed's ``o``), otherwise they are returned alone.
    """

    def __init__(self, heads: int = 16, aggregate: bool = True, concat_with_x: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.heads = int(heads)
        self.aggregate = bool(aggregate)
        self.concat_with_x = bool(concat_with_x)

    def build(self, input_shape):
        channels = input_shape[-1]
        self.kernel = self.add_weight(name="kernel", shape=(3, 3, channels, self.heads), initializer="he_uniform")
        self.bias = self.add_weight(name="bias", shape=(self.heads,), initializer="zeros")
        self.gamma = self.add_weight(name="gamma", shape=(), initializer="ones")

    def attention_maps(self, x):
        """Attention scores of shape (batch, H, W, heads); each head sums to 1 over the H*W positions."""
        logits = ops.conv(x, ops.cast(self.kernel, x.dtype), padding="same") + ops.cast(self.bias, x.dtype)
        shape = ops.shape(logits)
        flat = ops.reshape(ops.cast(logits, "float32"), (shape[0], -1, self.heads))
        alpha = ops.softmax(flat, axis=1)  # over spatial positions, in float32 even under mixed precision
        return ops.cast(ops.reshape(alpha, shape), x.dtype)

    def call(self, x):
        alpha = self.attention_maps(x)
        gamma = ops.cast(self.gamma, x.dtype)
        if self.aggregate:
            attended = gamma * x * ops.sum(alpha, axis=-1, keepdims=True)
        else:
            # (B, H, W, heads, 1) * (B, H, W, 1, C) -> (B, H, W, heads * C)
            u = ops.expand_dims(alpha, -1) * ops.expand_dims(x, -2)
            shape = ops.shape(x)
            attended = gamma * ops.reshape(u, (shape[0], shape[1], shape[2], -1))
        return ops.concatenate([x, attended], axis=-1) if self.concat_with_x else attended

    def compute_output_shape(self, input_shape):
        channels = input_shape[-1] if self.aggregate else input_shape[-1] * self.heads
        if self.concat_with_x:
            channels = channels + input_shape[-1]
        return (*input_shape[:-1], channels)

    def get_config(self):
        return {**super().get_config(), "heads": self.heads, "aggregate": self.aggregate,
                "concat_with_x": self.concat_with_x}


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
