"""
The decoder of a trained latent diffusion model, fine-tuned with its encoder and denoiser frozen: the
latent space they share does not move, so the denoiser stays valid.

``[model.decoder] base`` is that model (registry name, model directory or pinned ``hf://``
reference); the loss is the autoencoder's, with the term weights of ``[model.autoencoder]``, on the
posterior mean (the latents the denoiser works with). The export is the base model with the new
decoder.
"""

import copy
import dataclasses

from ...models.autoencoder import freeze_encoder
from ...models.diffusion import DiffusionSuperResolution
from ..common import finish_model_directory, load_reference
from .autoencoder import AutoencoderTask
from .registry import register

__all__ = ["DecoderConfig", "DecoderTask"]


@dataclasses.dataclass
class DecoderConfig:
    """``[model.decoder]``: the latent diffusion model whose decoder is fine-tuned."""

    #: Registry name, model directory or pinned ``hf://`` reference.
    base: str = ""


@register("decoder")
class DecoderTask(AutoencoderTask):
    """The decoder fine-tune: the autoencoder loss on the posterior mean, encoder frozen."""

    config_class = DecoderConfig
    legacy_keys = {"decoder_base": "base"}
    sample_posterior = False

    @classmethod
    def config_tables(cls):
        """``[model.decoder]`` and the loss weights of ``[model.autoencoder]``."""
        return ("decoder", "autoencoder")

    @classmethod
    def check_config(cls, model_config):
        """Refuse a decoder fine-tune without a base model."""
        if not model_config.decoder.base:
            raise ValueError(
                '[model] kind = "decoder" fine-tunes the decoder of a trained latent model: set '
                "[model.decoder] base to its registry name, directory or hf:// reference"
            )

    def setup(self, progress):
        """Load the base model (checksums verified)."""
        ref, base = load_reference(self.cfg.model.decoder.base)
        if not (isinstance(base, DiffusionSuperResolution) and base.autoencoder is not None):
            raise ValueError(
                f"[model.decoder] base {ref!r} is not a latent diffusion model (it has no autoencoder); "
                'a decoder fine-tune needs one, e.g. "ldm-res"'
            )
        self.base = base

    def build_network(self):
        """The base model's autoencoder, decoder trainable."""
        return _decoder_only(copy.deepcopy(self.base.autoencoder).float())

    def load_network(self, path):
        """A checkpoint's autoencoder, decoder trainable."""
        return _decoder_only(super().load_network(path))

    def write_model(self, model, final, step):
        """The base model with the new decoder; its other parts and inference settings unchanged."""
        base = self.base
        sr = DiffusionSuperResolution(
            copy.deepcopy(base.denoiser).cpu().float(),
            model,
            name=base.name,
            revision=self.revision(step),
            sampler=base.sampler,
            steps=base.steps,
            start_timestep=base.start_timestep,
            tile_size=base.tile_size,
            halo=base.halo,
            device="cpu",
        )
        sr.save_pretrained(final)
        # "ldm-res" names whichever weights this package version embeds: record which ones these were.
        finish_model_directory(final, self.cfg, step, decoder_base_revision=base.revision)


def _decoder_only(autoencoder):
    # Only the decoder trains: the encoder, and so the latents the denoiser was trained on, stay.
    return freeze_encoder(autoencoder.requires_grad_(True))
