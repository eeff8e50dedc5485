"""Network definitions, one file per part of the pipeline.

Every model keeps its constructor arguments in ``self.args`` so a checkpoint can rebuild
it with ``build_model(ckpt["model_kind"], ckpt["model_args"])``.
"""
from models.film import ConvAutoencoder, Deconvolver, FeatureVAE
from models.lstm import LatentLSTM
from models.vcae import ConvVAE

MODELS = {cls.__name__: cls for cls in (ConvVAE, LatentLSTM, ConvAutoencoder, Deconvolver, FeatureVAE)}


def build_model(kind, args):
    if kind not in MODELS:
        raise ValueError(f"unknown model kind {kind!r}; known: {', '.join(MODELS)}")
    return MODELS[kind](**args)


def load_model(ckpt, device="cpu"):
    """Rebuild the model a checkpoint describes, with its weights, in eval mode."""
    model = build_model(ckpt["model_kind"], ckpt["model_args"])
    model.load_state_dict(ckpt["model_state"])
    return model.to(device).eval()
