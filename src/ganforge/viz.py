"""Loss curves as a PNG, drawn with matplotlib off-screen."""

from pathlib import Path

from ganforge.atomic import atomic_path


LOSS_KEYS = ("loss_d", "loss_g", "l1", "l2")


def plot_losses(records: list[dict], path: Path) -> None:
    """Plot the losses a run logged against step (raw, and smoothed when there are many points).

    A key missing from some records (D's loss before a super-resolution run's adversarial phase)
    leaves a gap rather than a line to zero.
    """
    records = [r for r in records if "event" not in r]  # rollbacks and warnings are not points
    keys = [k for k in LOSS_KEYS if any(k in r for r in records)]
    if not records:
        return
    import matplotlib  # imported here: it costs ~30 MB and a second, and only plotting needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    steps = [r["step"] for r in records]
    for key in keys:
        values = [r.get(key, float("nan")) for r in records]
        line = axes[0].plot(steps, values, alpha=0.3, lw=0.8)[0]
        axes[0].plot(steps, _smooth(values), color=line.get_color(), label=key)
    axes[0].set(xlabel="step", title="losses")
    axes[0].legend()
    for key, label in (("d_real", "D(x)"), ("d_fake", "D(G(z))")):
        if any(key in r for r in records):
            axes[1].plot(steps, _smooth([r.get(key, float("nan")) for r in records]), label=label)
    axes[1].set(xlabel="step", title="discriminator outputs", ylim=(0, 1))
    if axes[1].lines:
        axes[1].legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)


def _smooth(values: list[float], window: int = 20) -> list[float]:
    out, acc = [], []
    for v in values:
        if v != v:  # NaN: a gap, and the average starts afresh after it
            acc.clear()
            out.append(v)
            continue
        acc.append(v)
        if len(acc) > window:
            acc.pop(0)
        out.append(sum(acc) / len(acc))
    return out
