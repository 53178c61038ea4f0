"""The deterministic CNN baselines' common task: a network from its table, pixel loss, full fine-tuning."""

import torch

from ..common import FACTOR, finish_model_directory, load_reference
from ..finetune import FullFinetune
from .base import Task, config_kwargs

__all__ = ["CNNTask"]


class CNNTask(Task):
    """
    A CNN mapping the input on its own grid to the target (`network_class`), exported as `model_class`.

    Trained from scratch with the kind's loss on degraded HR crops; fine-tuned in full on pairs, as the
    paper does for its baselines.
    """

    finetune_method = FullFinetune

    @classmethod
    def is_standalone(cls, cfg):
        """A CNN needs nothing but its network."""
        return True

    @classmethod
    def standalone_model(cls, cfg, network, revision):
        """The super-resolution model of ``network``."""
        return cls.model_class(network, revision=revision, tile_size=cfg.model.tile_size, device="cpu")

    def build_network(self):
        """
        The network of the table's ``init_from`` model, if it has that key and it is set; else a new
        one from the kind's table (`signature_config` of `network_class`), seeded.
        """
        table = getattr(self.cfg.model, self.kind)
        if getattr(table, "init_from", ""):
            ref, base = load_reference(table.init_from)
            if not isinstance(base, self.model_class):
                raise ValueError(
                    f"[model.{self.kind}] init_from {ref!r} is not a {self.kind} model "
                    f"({type(base).__name__})"
                )
            # A fresh float32 network with the base's weights (stored in float16, held channels-last).
            network = self.network_class.from_config(base.network.config)
            network.load_state_dict({k: v.float() for k, v in base.network.state_dict().items()})
            return network
        torch.manual_seed(self.cfg.seed)  # the initial weights are part of the run's definition
        return self.network_class(factor=FACTOR, **config_kwargs(table, self.network_class))

    def write_model(self, model, final, step):
        """The model directory of the network, with its training record."""
        self.standalone_model(self.cfg, model, self.revision(step)).save_pretrained(final)
        finish_model_directory(final, self.cfg, step)
