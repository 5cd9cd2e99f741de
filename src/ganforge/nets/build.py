"""The generation networks a saved model's config describes, built in one place for training and for sampling.

A DCGAN's `depth` is in its config only where it is not 0 (`depth_entry`): models saved before the option existed
have none, and read as 0.
"""

from torch import nn

from ganforge.nets.brief import BriefDiscriminator, BriefGenerator
from ganforge.nets.conditional import ConditionalDCGANGenerator, ProjectionDiscriminator
from ganforge.nets.dcgan import DCGANDiscriminator, DCGANGenerator


def depth_entry(depth: int | None) -> dict:
    """What a generation task's model config holds of `depth`: nothing where it is 0 (or unset, --arch seed)."""
    return {"depth": depth} if depth else {}


def build_generator(model: dict) -> nn.Module:
    """The generator described by a saved model's config (class-conditional where it has `num_classes`)."""
    if model.get("num_classes"):
        return ConditionalDCGANGenerator(model["resolution"], model["channels"], model["latent_dim"], model["width"],
                                         model["num_classes"], depth=model.get("depth", 0))
    if model["arch"] == "seed":
        return BriefGenerator(model["channels"], model["latent_dim"])
    return DCGANGenerator(model["resolution"], model["channels"], model["latent_dim"], model["width"],
                          model.get("depth", 0))


def build_discriminator(model: dict, spectral_norm: bool = False, norm: str = "batch",
                        cond_d: str = "projection") -> nn.Module:
    """The discriminator of a generator's config (training builds it; `evaluate`'s membership attack rebuilds it)."""
    if model.get("num_classes"):
        return ProjectionDiscriminator(model["resolution"], model["channels"], model["width"], model["num_classes"],
                                       spectral_norm, norm, projection=cond_d == "projection",
                                       aux_classifier=cond_d == "acgan", depth=model.get("depth", 0))
    if model["arch"] == "seed":
        return BriefDiscriminator(model["channels"], spectral_norm)  # the brief's D has no batch norm
    return DCGANDiscriminator(model["resolution"], model["channels"], model["width"], spectral_norm, norm,
                              model.get("depth", 0))
