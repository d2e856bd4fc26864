"""The soft-attention layer of seed 004 (a Keras layer; imported only when a model is built)."""
from __future__ import annotations

import keras
from keras import layers, ops


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
