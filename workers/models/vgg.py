"""VGG16 backbone from keras.applications with a global-average-pool softmax head (seed 003)."""
from __future__ import annotations


from workers.models.common import classifier_head, image_input
from workers.models.registry import register_model


@register_model("vgg16", min_input_size=32, seed="003", preprocessing={"imagenet": "caffe"})
def vgg16(input_shape, num_classes, weights_path: str | None = None, dropout: float | None = None,
          conv6_filters: int | None = None, preprocessing: str | None = None):
    """VGG-16 backbone (optionally ImageNet weights from a local file), GAP, softmax.

    Seed 003 replaces VGG16's FC6/FC7 with global average pooling; ``conv6_filters`` adds its optional
    1x1 "Conv6" (128/256/512 filters in the paper) in front of the pooling. Nothing is ever downloaded:
    the application is built with ``weights=None`` and ``weights_path`` (a no-top weights file) is loaded locally.
    ImageNet weights get ImageNet's preprocessing (``preprocessing``, from the registry entry).
    """
    import keras
    from keras import layers
    inputs, x = image_input(input_shape, preprocessing)
    backbone = keras.applications.VGG16(include_top=False, weights=None, input_shape=input_shape)
    if weights_path:
        backbone.load_weights(weights_path)
    x = backbone(x)
    if conv6_filters:
        x = layers.Conv2D(int(conv6_filters), 1, activation="relu", name="conv6")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    return keras.Model(inputs, classifier_head(x, num_classes), name="vgg16")
