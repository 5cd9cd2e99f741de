"""A small feature network trained on the user's own data, so FID, KID and precision/recall need no download.

Inception features are the standard, but they need a 100 MB file and describe ImageNet photos,
not 28x28 digits. The domain network learns what matters in the data at hand: with labels
it is a classifier (its penultimate layer gives features, its softmax the class probabilities
the collapse monitor histograms), without labels it learns SimCLR-style (Chen et al. 2020) to
give two random augmentations of an image the same features. Scores are comparable between
runs only when they use the same saved network, which is why its name carries a weights digest.
"""

import hashlib
import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ganforge.data import ImageSet
from ganforge.data.embedded import cache_dir
from ganforge.errors import UserError
from ganforge.metrics.extractors import as_float_images, batched, weights_digest
from ganforge.saved_model import load_model, save_model

log = logging.getLogger("ganforge")
KIND = "domain_features"


class DomainNet(nn.Module):
    """image -> (N, feature_dim) features -> `head`: class logits, or a projection for the contrastive loss."""

    def __init__(self, channels: int, width: int = 32, feature_dim: int = 128, num_classes: int = 0):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * width, 4 * width, 3, 1, 1), nn.LeakyReLU(0.2),
            # A fixed 4x4 map keeps coarse layout in the features at any resolution.
            nn.AdaptiveAvgPool2d(4), nn.Flatten(),
            nn.Linear(4 * width * 16, feature_dim), nn.ReLU(),
        )  # fmt: skip
        if num_classes:
            self.head = nn.Linear(feature_dim, num_classes)
        else:  # SimCLR scores a projection of the features, which leaves the features themselves richer
            self.head = nn.Sequential(nn.Linear(feature_dim, feature_dim), nn.ReLU(), nn.Linear(feature_dim, 64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class DomainFeatures:
    """A trained DomainNet with the input format it expects; an extractor like InceptionV3Features."""

    def __init__(self, net: DomainNet, config: dict, device: str | torch.device = "cpu", batch_size: int = 256):
        self.net = net.eval().to(device)
        self.config = config
        self.device = torch.device(device)
        self.batch_size = batch_size
        objective = "classifier" if self.is_classifier else "contrastive"
        self.name = f"domain-{objective}-{config['resolution']}px:{weights_digest(net.state_dict())}"

    @property
    def is_classifier(self) -> bool:
        return self.config["num_classes"] > 0

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        return fit_images(x, self.config, self.name)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(N, feature_dim) penultimate-layer features of images NCHW in [-1, 1] (or uint8)."""
        return batched(lambda x: self.net.body(self._input(x)), images, self.batch_size, self.device)

    def predict_proba(self, images: torch.Tensor) -> torch.Tensor:
        """(N, num_classes) class probabilities; only a network trained with labels has them."""
        if not self.is_classifier:
            raise ValueError(f"{self.name} was trained without labels and predicts no classes")
        return batched(lambda x: self.net(self._input(x)).softmax(dim=1), images, self.batch_size, self.device)

    def save(self, folder: str | Path) -> None:
        """Write `config.json` and `weights.safetensors` into `folder`."""
        save_model(Path(folder), self.config, {"weights": self.net.state_dict()})


def fit_images(x: torch.Tensor, config: dict, name: str) -> torch.Tensor:
    """Images in the network's format: resized to its resolution, greyscale repeated to RGB if it wants RGB.

    An RGB image fed to a greyscale network is a mistake (features of the wrong data), not a detail.
    """
    if x.shape[1] == 1 and config["channels"] == 3:
        x = x.repeat(1, 3, 1, 1)
    if x.shape[1] != config["channels"]:
        raise UserError(f"{name} expects {config['channels']}-channel images, got {x.shape[1]}-channel ones")
    res = config["resolution"]
    return x if x.shape[-2:] == (res, res) else F.interpolate(x, (res, res), mode="bilinear", antialias=True)


def load_domain_features(folder: str | Path, device: str | torch.device = "cpu") -> DomainFeatures:
    """A DomainFeatures saved with `.save(folder)`."""
    folder = Path(folder)
    config, state = load_model(folder, "weights")
    if config.get("kind") != KIND:
        raise UserError(f"{folder}: not a domain-features folder (config.json has kind {config.get('kind')!r})")
    net = DomainNet(config["channels"], config["width"], config["feature_dim"], config["num_classes"])
    try:
        net.load_state_dict(state)
    except RuntimeError:
        raise UserError(f"{folder}: weights.safetensors does not match its config.json") from None
    return DomainFeatures(net, config, device)


def train_domain_features(
    images: torch.Tensor,
    labels: torch.Tensor | None = None,
    resolution: int | None = None,
    channels: int | None = None,
    steps: int = 400,
    seed: int = 0,
    batch_size: int = 128,
    width: int = 32,
    feature_dim: int = 128,
    lr: float = 1e-3,
    device: str | torch.device = "cpu",
) -> DomainFeatures:
    """Train a DomainNet on real images (uint8 or float in [-1, 1]), deterministic for a seed on the CPU.

    With labels for every image (all >= 0, at least two classes) it trains as a classifier with cross-entropy and
    mild shifts and zooms; otherwise with the NT-Xent contrastive loss on two strong
    augmentations (crop, shift, flip, brightness, contrast) of each image. `resolution` and
    `channels` default to the images'. The global RNG is left as it was: initialisation and
    sampling draw from their own generators, so calling this mid-training changes nothing else.
    """
    labels = None if labels is None else torch.as_tensor(labels).long()
    resolution = resolution or images.shape[-1]
    channels = channels or images.shape[1]
    # One class (a folder with a single subfolder) teaches a classifier nothing: learn without labels then.
    labelled = labels is not None and bool((labels >= 0).all()) and int(labels.max()) >= 1
    num_classes = int(labels.max()) + 1 if labelled else 0
    config = {
        "kind": KIND, "resolution": resolution, "channels": channels, "width": width, "feature_dim": feature_dim,
        "num_classes": num_classes, "steps": steps, "seed": seed,
    }  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = DomainNet(channels, width, feature_dim, num_classes).to(device)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    n = min(batch_size, len(images))
    for _ in tqdm(range(steps), desc="training the domain network", unit="step", leave=False, disable=steps < 100):
        idx = torch.randint(len(images), (n,), generator=gen)
        # Batches are converted as they are drawn, so a large uint8 set never exists as float.
        x = fit_images(as_float_images(images[idx]), config, "the domain network")
        if labelled:
            loss = F.cross_entropy(net(random_views(x, gen, strong=False).to(device)), labels[idx].to(device))
        else:
            views = torch.cat([random_views(x, gen, strong=True), random_views(x, gen, strong=True)]).to(device)
            loss = nt_xent(net(views))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    net.eval()
    return DomainFeatures(net, config, device)


def random_views(x: torch.Tensor, gen: torch.Generator, strong: bool) -> torch.Tensor:
    """Random zoom and shift (and, when `strong`, horizontal flip, brightness and contrast) per image.

    One affine resampling does crop, zoom, shift and flip at once; borders are extended, not zeroed.
    """
    n = x.shape[0]

    def uniform(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, *shape, generator=gen)

    # affine_grid coordinates span [-1, 1]: a zoom below 1 shows a crop, a shift of 0.15 moves 7.5 %.
    zoom = uniform(0.7, 1.0) if strong else uniform(0.9, 1.1)
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0) if strong else torch.ones(n)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = zoom * flip, zoom
    theta[:, :, 2] = uniform(-0.25, 0.25, 2) if strong else uniform(-0.15, 0.15, 2)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    if strong:
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * uniform(0.6, 1.4, 1, 1, 1) + mean + uniform(-0.3, 0.3, 1, 1, 1)
    return x.clamp(-1, 1)


def nt_xent(z: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """SimCLR's loss for 2n projections, where rows i and i + n are two views of one image.

    Each row must pick out its partner among the other 2n - 1 rows by cosine similarity.
    """
    n = z.shape[0] // 2
    z = F.normalize(z, dim=1)
    sim = (z @ z.T / temperature).masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(sim, partner)


def domain_features(train: ImageSet, steps: int = 400, seed: int = 0) -> DomainFeatures:
    """The domain network for a training set, trained once and cached under the cache folder.

    The key covers the images themselves, so another subset or resolution gets its own network.
    """
    digest = hashlib.sha256(train.images.numpy().tobytes() + train.labels.numpy().tobytes()).hexdigest()[:16]
    folder = cache_dir() / "features" / f"{digest}-s{steps}-seed{seed}"
    if (folder / "config.json").exists():
        return load_domain_features(folder)
    log.info("training the domain feature network on %d images of %s (once; cached in %s)", len(train), train.source, folder)
    features = train_domain_features(train.images, train.labels, steps=steps, seed=seed)
    try:
        features.save(folder)
    except OSError:
        pass  # a read-only cache only costs the training again
    return features
