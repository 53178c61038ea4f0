"""
The magnetogram autoencoder of the latent diffusion variants (`sunpy_superres.models.autoencoder`).

``[model.autoencoder]`` holds the parameters of
`~sunpy_superres.models.autoencoder.build_autoencoder` (``factor`` is also the block side of a
space-to-depth latent) and the weights of the terms of
`~sunpy_superres.models.autoencoder.autoencoder_loss`, with their defaults. A latent diffusion run
without a trained autoencoder trains one first, from this table.
"""

import json

import torch

from ...models.autoencoder import MagnetogramAutoencoder, autoencoder_loss, build_autoencoder
from ..common import training_record
from .base import Task, config_kwargs, signature_config
from .registry import register

__all__ = ["AutoencoderConfig", "AutoencoderTask", "AutoencoderObjective"]

AutoencoderConfig = signature_config(
    "AutoencoderConfig",
    build_autoencoder,
    autoencoder_loss,
    exclude=("sample_posterior",),
    doc=(
        "``[model.autoencoder]``: the parameters of `~sunpy_superres.models.autoencoder.build_autoencoder` "
        "and the term weights of `~sunpy_superres.models.autoencoder.autoencoder_loss`."
    ),
)


class AutoencoderObjective(torch.nn.Module):
    """
    The autoencoder loss as a module forward, so distributed wrappers synchronise its gradients.

    Parameters
    ----------
    autoencoder : `~sunpy_superres.models.autoencoder.MagnetogramAutoencoder`
    table : `AutoencoderConfig`
        The loss terms' weights.
    sample_posterior : bool, optional
        Decode a posterior sample (training) rather than its mean.
    """

    def __init__(self, autoencoder, table, *, sample_posterior=True):
        super().__init__()
        self.autoencoder = autoencoder
        self.terms = dict(config_kwargs(table, autoencoder_loss), sample_posterior=sample_posterior)

    def forward(self, hr, eps):
        return autoencoder_loss(self.autoencoder, hr, eps, **self.terms)


@register("autoencoder")
class AutoencoderTask(Task):
    """The autoencoder: reconstruction of HR crops (`~sunpy_superres.models.autoencoder.autoencoder_loss`)."""

    config_class = AutoencoderConfig
    network_class = MagnetogramAutoencoder
    model_class = MagnetogramAutoencoder
    legacy_keys = {
        "ae_factor": "factor",
        "latent_channels": "latent_channels",
        "ae_base_channels": "base_channels",
        "ae_max_channels": "max_channels",
        "ae_layers_per_block": "layers_per_block",
        "ae_norm_num_groups": "norm_num_groups",
        "ae_spectral_weight": "spectral_weight",
        "ae_texture_weight": "texture_weight",
        "ae_texture_window": "texture_window",
    }
    #: Whether the loss decodes a posterior sample (or its mean).
    sample_posterior = True

    def build_network(self):
        """A new autoencoder from ``[model.autoencoder]``, seeded."""
        torch.manual_seed(self.cfg.seed)  # the initial weights are part of the run's definition
        return build_autoencoder(**config_kwargs(self.cfg.model.autoencoder, build_autoencoder))

    def training_module(self, net):
        """The loss as a module around ``net``."""
        self.network = net
        return AutoencoderObjective(net, self.cfg.model.autoencoder, sample_posterior=self.sample_posterior)

    def loss(self, module, batch, generator):
        """The autoencoder loss, its posterior sample drawn from ``generator``."""
        f, hr = self.network.factor, batch.hr
        eps = torch.randn(
            (hr.shape[0], self.network.config.latent_channels, hr.shape[2] // f, hr.shape[3] // f),
            generator=generator,
        ).to(self.device)
        return module(hr, eps)

    def write_model(self, model, final, step):
        """A diffusers autoencoder directory with the training record (no super-resolution manifest)."""
        model.save_pretrained(final, safe_serialization=True)
        (final / "training_config.json").write_text(json.dumps(training_record(self.cfg, step), indent=2))
