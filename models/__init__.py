"""Network definitions, one file per part of the pipeline, and their checkpoints.

Every model keeps its constructor arguments in ``self.args`` so a checkpoint can rebuild
it with ``build_model(ckpt["model_kind"], ckpt["model_args"])``.
"""
from models.checkpoints import build_model, load_model  # noqa: F401
from models.film import ConvAutoencoder, Deconvolver, FeatureConvVAE, FeatureVAE
from models.lstm import LatentLSTM
from models.vcae import ConvVAE

MODELS = {cls.__name__: cls for cls in (ConvVAE, LatentLSTM, ConvAutoencoder, Deconvolver, FeatureVAE,
                                              FeatureConvVAE)}
