"""Architecture zoo. Each architecture lives in its own module and registers itself on import."""
from workers.models.registry import ARCHITECTURES, ModelEntry, create_model, list_models, model_entry, register_model

# Importing the modules registers their architectures.
from workers.models import cnn, cnn_basic, cnn_lstm, lstm_cnn, resnet, resnet_small, se_resnext, soft_attention, vgg  # noqa: F401,E402

__all__ = ["ARCHITECTURES", "ModelEntry", "create_model", "list_models", "model_entry", "register_model"]
