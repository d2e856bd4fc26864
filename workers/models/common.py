"""Building blocks shared by several architectures."""
from __future__ import annotations



def image_input(input_shape: tuple[int, int, int]):
    """Raw-pixel input followed by min-max scaling of [0, 255] to [0, 1] (seed 000, eq. 1)."""
    import keras
    from keras import layers
    inputs = keras.Input(shape=input_shape, name="image")
    return inputs, layers.Rescaling(1.0 / 255, name="minmax_scale")(inputs)


def classifier_head(x, num_classes: int):
    """The last layer: logits and softmax computed and output in float32 even under mixed precision (the Keras
    mixed-precision guide's advice), so a bfloat16 output never rounds two class probabilities into a tie."""
    from keras import layers
    logits = layers.Dense(num_classes, dtype="float32", name="logits")(x)
    return layers.Activation("softmax", dtype="float32", name="probs")(logits)
