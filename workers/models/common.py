"""Building blocks shared by several architectures."""
from __future__ import annotations



def image_input(input_shape: tuple[int, int, int], preprocessing: str | None = None):
    """Raw-pixel input followed by min-max scaling of [0, 255] to [0, 1] (seed 000, eq. 1), or by the
    preprocessing pretrained weights expect (``caffe``, ``torch``, ``tf``: keras.applications' modes, in float32)."""
    import keras
    from keras import layers
    inputs = keras.Input(shape=input_shape, name="image")
    if preprocessing:
        return inputs, imagenet_preprocessing(preprocessing)(inputs)
    return inputs, layers.Rescaling(1.0 / 255, name="minmax_scale")(inputs)


def imagenet_preprocessing(mode: str):
    """A layer applying ``keras.applications.imagenet_utils.preprocess_input(x, mode=mode)`` to [0, 255] pixels."""
    import keras
    from keras.applications import imagenet_utils

    class ImageNetPreprocessing(keras.layers.Layer):
        def __init__(self, mode: str = "caffe", **kwargs):
            super().__init__(**kwargs)
            self.mode = mode

        def call(self, x):
            return imagenet_utils.preprocess_input(keras.ops.cast(x, "float32"), mode=self.mode)

        def get_config(self):
            return {**super().get_config(), "mode": self.mode}

    return ImageNetPreprocessing(mode, dtype="float32", name="imagenet_preprocessing")


def classifier_head(x, num_classes: int):
    """The last layer: logits and softmax computed and output in float32 even under mixed precision (the Keras
    mixed-precision guide's advice), so a bfloat16 output never rounds two class probabilities into a tie."""
    from keras import layers
    logits = layers.Dense(num_classes, dtype="float32", name="logits")(x)
    return layers.Activation("softmax", dtype="float32", name="probs")(logits)
