"""Reference values for revelio's Diff-C classifier (src/diffc/model.rs, src/diffc/train.rs),
from a PyTorch DiffusionFeatureClassifier_V4 with small widths.

The module below has the reference's module tree and forward (Revelio's
diffc_image_classification/models.py): input_bn (BatchNorm2d, affine=False), conv{i} 3x3
(stride 1, then 2) + bn{i} + ReLU + dropout{i} (Dropout2d), AdaptiveAvgPool2d(1), dropout_fc,
fc; only the widths and depth are parameters here, so the fixture stays small. Its dropout
masks are revelio's: the script re-implements revelio's counter-based generator (src/rng.rs)
and feeds the masks revelio's model draws for forward seed SEED, so train mode is compared
with dropout on.

Writes tests/fixtures/diffc/diffc.safetensors:
  init.<key>                 the state dict (PyTorch's names) the Rust test loads, parameters
                             moved off their init and running statistics set to random values
  x [B, CIN, H, W], labels [B] (int64)
  eval.logits [B, K]         model.eval() logits
  train.logits [B, K], train.loss []   model.train() with the masks, CrossEntropyLoss
  grad.<param>               gradients of train.loss
  after_train.<bn>.running_mean / running_var   running statistics after the train forward
  step.<param>               parameters after one torch.optim.AdamW step (lr LR, weight decay WD)
  cosine.lr [30] (float64)   CosineAnnealingLR(T_max=90) lrs of epochs 0..29 from base 1e-4,
                             the reference's 30 of 90 epochs

  /work/refvenv/bin/python tools/reference/make_diffc_fixtures.py
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from common import bits, derive, perturb, save

CIN, WIDTHS, K = 6, [8, 8, 8, 8], 5
B, H, W = 4, 8, 8
P = 0.3
SEED = 1234
LR, WD = 1e-3, 0.01

def rng_uniform(seed, i):
    return (bits(seed, i) >> 40) * (1.0 / 16777216.0)


def keep_mask(seed, rows, cols, p):
    """revelio's dropout mask over [rows, cols] draws: kept iff uniform(seed, r * cols + c) >= p (p as f32)."""
    p32 = torch.tensor(p, dtype=torch.float32).item()
    m = [[1.0 if rng_uniform(seed, r * cols + c) >= p32 else 0.0 for c in range(cols)] for r in range(rows)]
    return torch.tensor(m, dtype=torch.float32)


class DiffusionFeatureClassifierV4(nn.Module):
    """The reference's classifier with configurable widths; forward(x, keep) uses the given keep
    masks (one [B, C] per block, then [B, C] for dropout_fc) instead of torch's dropout draws."""

    def __init__(self, cin, widths, num_classes, p):
        super().__init__()
        self.depth = len(widths)
        self.p = p
        self.input_bn = nn.BatchNorm2d(cin, affine=False)
        c = cin
        for i, w in enumerate(widths):
            setattr(self, f"conv{i + 1}", nn.Conv2d(c, w, kernel_size=3, stride=1 if i == 0 else 2, padding=1))
            setattr(self, f"bn{i + 1}", nn.BatchNorm2d(w))
            setattr(self, f"dropout{i + 1}", nn.Dropout2d(p=p))
            c = w
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.dropout_fc = nn.Dropout(p=p)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x, keep=None):
        x = self.input_bn(x)
        for i in range(self.depth):
            x = getattr(self, f"conv{i + 1}")(x)
            x = getattr(self, f"bn{i + 1}")(x)
            x = F.relu(x)
            if keep is None:
                x = getattr(self, f"dropout{i + 1}")(x)
            elif self.training:
                x = x * (keep[i][:, :, None, None] / (1 - self.p))
        x = self.gap(x).view(x.size(0), -1)
        if keep is None:
            x = self.dropout_fc(x)
        elif self.training:
            x = x * (keep[self.depth] / (1 - self.p))
        return self.fc(x)


def main():
    torch.manual_seed(0)
    model = DiffusionFeatureClassifierV4(CIN, WIDTHS, K, P)
    perturb(model, seed=1)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, buf in model.named_buffers():
            if name.endswith("running_mean"):
                buf.copy_(0.3 * torch.randn(buf.shape, generator=g))
            elif name.endswith("running_var"):
                buf.copy_(0.5 + 1.5 * torch.rand(buf.shape, generator=g))
            elif name.endswith("num_batches_tracked"):
                buf.fill_(7)
    out = {f"init.{k}": v.clone() for k, v in model.state_dict().items()}

    x = 2.0 * torch.randn(B, CIN, H, W, generator=g) + 1.0
    labels = torch.tensor([0, 3, 1, 4], dtype=torch.int64)
    out["x"], out["labels"] = x, labels

    model.eval()
    with torch.no_grad():
        out["eval.logits"] = model(x)

    keep = [keep_mask(derive(SEED, [i]), B, w, P) for i, w in enumerate(WIDTHS)]
    keep.append(keep_mask(derive(SEED, [len(WIDTHS)]), B, WIDTHS[-1], P))
    model.train()
    logits = model(x, keep)
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    out["train.logits"], out["train.loss"] = logits, loss
    for name, p in model.named_parameters():
        out[f"grad.{name}"] = p.grad.clone()
    for name, buf in model.named_buffers():
        if "running" in name:
            out[f"after_train.{name}"] = buf.clone()

    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WD)
    opt.step()
    for name, p in model.named_parameters():
        out[f"step.{name}"] = p.detach().clone()

    probe = torch.nn.Parameter(torch.zeros(1))
    sched_opt = torch.optim.AdamW([probe], lr=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(sched_opt, T_max=90)
    lrs = []
    for _ in range(30):
        lrs.append(sched_opt.param_groups[0]["lr"])
        sched_opt.step()
        sched.step()
    out["cosine.lr"] = torch.tensor(lrs, dtype=torch.float64)

    meta = {"p": P, "seed": SEED, "lr": LR, "weight_decay": WD, "widths": WIDTHS}
    save("diffc/diffc.safetensors", out, "make_diffc_fixtures.py", meta)


if __name__ == "__main__":
    main()
