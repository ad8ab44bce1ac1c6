"""Train the digit classifier whose features define FD-digits (``ld3core.classifier``).

    python scripts/train_classifier.py --out models/digits-classifier [--epochs 60] [--seed 0] [--threads 1]

Data: the 16 px sklearn digits of ``scripts/train_models.py`` (the same images the digit
diffusion models learn), split 80/20 per class with a fixed seed; the 20% are never trained
on and give the test accuracy on the model card. Augmentation: random shifts of up to one
pixel. Writes ``classifier.safetensors`` and ``MODEL_CARD.md`` (accuracy, command, time,
sha256); the sha256 must then be set as ``CLASSIFIER_SHA256`` in ``ld3core/classifier.py``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # ld3core and worker, from a checkout

from ld3core.classifier import WEIGHTS_FILE, DigitsClassifier  # noqa: E402
from ld3core.files import file_sha256  # noqa: E402
from worker.digits import load_digits  # noqa: E402

TEST_FRACTION = 0.2


def digits_with_labels() -> tuple[torch.Tensor, torch.Tensor]:
    """(1797, 1, 16, 16) images in [-1, 1] and their labels (1797,), in sklearn's order."""
    return load_digits(16)


def split(labels: torch.Tensor, seed: int, test_fraction: float = TEST_FRACTION) -> tuple[torch.Tensor, torch.Tensor]:
    """Stratified train/test indices: ``test_fraction`` of every class, drawn with ``seed``."""
    g = torch.Generator().manual_seed(seed)
    train, test = [], []
    for c in labels.unique():
        idx = (labels == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        k = round(len(idx) * test_fraction)
        test.append(idx[:k])
        train.append(idx[k:])
    return torch.cat(train).sort().values, torch.cat(test).sort().values


def random_shift(x: torch.Tensor, g: torch.Generator, max_shift: int = 1) -> torch.Tensor:
    """Shift each image by up to ``max_shift`` px in x and y (padded with the background value -1)."""
    n, _, h, w = x.shape
    p = max_shift
    padded = F.pad(x, (p, p, p, p), value=-1.0)
    dy, dx = torch.randint(0, 2 * p + 1, (2, n), generator=g)
    return torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])


@torch.no_grad()
def accuracy(net: DigitsClassifier, x: torch.Tensor, y: torch.Tensor) -> float:
    net.eval()
    return (net(x).argmax(1) == y).float().mean().item()


def train_classifier(out: str | Path, *, epochs: int = 60, seed: int = 0, batch_size: int = 64, lr: float = 2e-3,
                     command: str = "") -> dict:
    """Train on the stratified 80%, report accuracy on the held-out 20%, save weights and card."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    x, y = digits_with_labels()
    tr, te = split(y, seed)
    net = DigitsClassifier()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * -(-len(tr) // batch_size))
    start = time.monotonic()
    for epoch in range(epochs):
        net.train()
        perm = tr[torch.randperm(len(tr), generator=g)]
        for i in range(0, len(perm), batch_size):
            b = perm[i : i + batch_size]
            loss = F.cross_entropy(net(random_shift(x[b], g)), y[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if (epoch + 1) % 5 == 0 or epoch + 1 == epochs:
            print(f"epoch {epoch + 1:3d}  loss {loss.item():.4f}  train acc {accuracy(net, x[tr], y[tr]):.4f}  "
                  f"{time.monotonic() - start:.0f}s", flush=True)
    wall = time.monotonic() - start
    summary = {"epochs": epochs, "seed": seed, "wall_s": wall, "n_train": len(tr), "n_test": len(te),
               "train_acc": accuracy(net, x[tr], y[tr]), "test_acc": accuracy(net, x[te], y[te]),
               "params": sum(p.numel() for p in net.parameters()), "threads": torch.get_num_threads(),
               "command": command}
    save(net, Path(out), summary)
    print(f"done in {wall:.0f}s: test accuracy {summary['test_acc']:.4f} on {len(te)} held-out digits; "
          f"sha256 {summary['sha256']} (set CLASSIFIER_SHA256 in ld3core/classifier.py)", flush=True)
    return summary


def save(net: DigitsClassifier, out: Path, summary: dict) -> None:
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(out / WEIGHTS_FILE), metadata={"format": "ld3-digits-classifier-v1"})
    (out / WEIGHTS_FILE).chmod(0o644)
    summary["sha256"] = file_sha256(out / WEIGHTS_FILE)
    (out / "MODEL_CARD.md").write_text(model_card(summary))


def model_card(s: dict) -> str:
    return f"""# digits-classifier

The feature extractor of FD-digits, the Frechet distance reported for the shipped digit
models (`ld3core.classifier`): a small CNN (`DigitsClassifier`: 2 x [conv 3x3, ReLU, conv
3x3, ReLU, max-pool] with 32 and 64 channels, a 128-unit ReLU layer whose activations are
the features, dropout 0.3, 10 logits), {s['params']:,} parameters, safetensors weights.

- Data: `sklearn.datasets.load_digits` at 16 x 16 px (`load_digits(16)` of
  `worker/digits.py`: values 0..16 scaled to [-1, 1], bilinear 8 -> 16 px), split
  per class into {s['n_train']} training and {s['n_test']} held-out test images (seed {s['seed']}).
- Training: AdamW (lr 2e-3, one-cycle, weight decay 1e-4), batch 64, {s['epochs']} epochs, random
  shifts of up to 1 px; {s['threads']} CPU thread(s), {s['wall_s']:.0f} s wall time.
- Command: `{s['command']}`
- Accuracy: **{s['test_acc'] * 100:.2f}% on the {s['n_test']} held-out test digits** (training split {s['train_acc'] * 100:.2f}%).
- sha256 of `{WEIGHTS_FILE}`: `{s['sha256']}` (`ld3core.classifier.CLASSIFIER_SHA256`).
"""


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    if args.epochs < 1:
        p.error("--epochs: must be >= 1")
    torch.set_num_threads(args.threads)
    command = "python scripts/train_classifier.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    train_classifier(args.out, epochs=args.epochs, seed=args.seed, command=command)


if __name__ == "__main__":
    main()
