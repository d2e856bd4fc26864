"""ResNet backbones from keras.applications with a global-average-pool softmax head (seeds 000, 003)."""
from __future__ import annotations


from workers.models.common import classifier_head, image_input
from workers.models.registry import register_model


def _resnet(application, name, input_shape, num_classes, weights_path: str | None, dropout: float | None,
            preprocessing: str | None = None):
    import keras
    from keras import layers
    inputs, x = image_input(input_shape, preprocessing)
    backbone = application(include_top=False, weights=None, input_shape=input_shape)
    if weights_path:
        backbone.load_weights(weights_path)
    x = backbone(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    if dropout:
        x = layers.Dropout(dropout)(x)
    return keras.Model(inputs, classifier_head(x, num_classes), name=name)


@register_model("resnet50", min_input_size=32, seed="000", preprocessing={"imagenet": "caffe"})
def resnet50(input_shape, num_classes, weights_path: str | None = None, dropout: float | None = None,
             preprocessing: str | None = None):
    """ResNet-50 backbone (optionally ImageNet weights from a local file, with their own preprocessing), GAP,
    softmax."""
    import keras
    return _resnet(keras.applications.ResNet50, "resnet50", input_shape, num_classes, weights_path, dropout,
                   preprocessing)


@register_model("resnet152", min_input_size=32, seed="003", preprocessing={"imagenet": "caffe"})
def resnet152(input_shape, num_classes, weights_path: str | None = None, dropout: float | None = None,
              preprocessing: str | None = None):
    """ResNet-152 backbone (optionally ImageNet weights from a local file, with their own preprocessing), GAP,
    softmax."""
    import keras
    return _resnet(keras.applications.ResNet152, "resnet152", input_shape, num_classes, weights_path, dropout,
                   preprocessing)
