"""Membership inference: can the discriminator tell the images it trained on from unseen ones?

LOGAN's white-box attack (Hayes et al. 2019): a discriminator that overfits its training set
scores those images as more real than fresh images of the same distribution, so ranking images
by D's score separates members from non-members. The attack's strength is the ROC AUC of the
scores of training images (members) against held-out ones: 0.5 is no leak, 1 a perfect attack.
LOGAN itself reports the accuracy of calling the top half of an equal mix "members", which is
given too. A differentially private D bounds how far any attack can get: for (epsilon, delta)-DP
the attack's true-positive rate is at most e^epsilon x its false-positive rate + delta.
"""

import torch
from sklearn.metrics import roc_auc_score

from ganforge.imageio import uint8_to_float


@torch.no_grad()
def discriminator_scores(discriminator: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor | None = None,
                         batch_size: int = 256) -> torch.Tensor:
    """D's logit for each uint8 image (with its class, for a conditional D), in eval mode, on D's device."""
    device = next(discriminator.parameters()).device
    scores = []
    for i in range(0, len(images), batch_size):
        x = uint8_to_float(images[i : i + batch_size].to(device))
        logits = discriminator(x) if labels is None else discriminator(x, labels[i : i + batch_size].to(device))
        scores.append(logits.float().cpu())  # every discriminator here gives one logit an image
    return torch.cat(scores)


def membership_auc(member_scores: torch.Tensor, nonmember_scores: torch.Tensor) -> float:
    """ROC AUC of an attack that calls higher-scored images members (scikit-learn's; ties count one half)."""
    scores = torch.cat([member_scores, nonmember_scores]).double().numpy()
    is_member = [1] * len(member_scores) + [0] * len(nonmember_scores)
    return float(roc_auc_score(is_member, scores))


def top_half_accuracy(member_scores: torch.Tensor, nonmember_scores: torch.Tensor) -> float:
    """LOGAN's accuracy: of equally many members and non-members, the share of members among the top-scored half."""
    n = min(len(member_scores), len(nonmember_scores))
    scores = torch.cat([member_scores[:n], nonmember_scores[:n]])
    top = scores.argsort(descending=True, stable=True)[:n]
    return float((top < n).double().mean())


def logan_attack(member_scores: torch.Tensor, nonmember_scores: torch.Tensor) -> dict:
    return {"auc": membership_auc(member_scores, nonmember_scores),
            "logan_accuracy": top_half_accuracy(member_scores, nonmember_scores),
            "members": len(member_scores), "nonmembers": len(nonmember_scores)}
