#!/usr/bin/python3
"""Train TinyCNN, cnnviz's bundled model, on synthetic concepts and export it.

Task: 12-way classification of the dominant (largest visible) shape's kind x
fill texture, e.g. "circle-striped", on images from make_concepts.render_sample
(rendered in memory). Shape needs edges and corners, texture needs periodic
patterns, and colours vary independently of the class, so the conv units
learn colour, edge/pattern and shape detectors that network dissection on the
make_concepts dataset can find.

TinyCNN (input 3 x 96 x 96, normalized with the training set's channel mean
and std, which the sidecar records):
    conv1 3->16   pool1   conv2 16->32   pool2   conv3 32->64   conv4 64->64
    pool4   conv5 64->128   avgpool   flatten   classifier 128->12
Each convN is nn.Sequential(Conv2d 3x3 pad 1, ReLU(inplace)), so "convN" taps
the post-ReLU map and "convN.0" the pre-ReLU one; pools are MaxPool2d(2).
Training uses a BatchNorm2d between each Conv2d and ReLU (without it the
optimizer sits on a plateau for hundreds of steps); before export every
BatchNorm is folded into its convolution (torch.nn.utils.fusion), so the
exported model has exactly the structure above and the same function.

Outputs (--out PATH.pt): TorchScript PATH.pt (torch.jit.script of the eval
model), sidecar PATH.json ("cnnviz-sidecar-1") and PATH_labels.txt (one class
name per line, in logit order).

Reproducible from --seed on a given machine and thread count: data come from
numpy Generators seeded with [seed, stream], weights and batch order from
torch.manual_seed(seed).

Training checkpoints (--checkpoints DIR [--checkpoint-count N], default 5),
for `cnnviz compare` (do concept detectors appear over training?): the same
run also exports the model at N optimizer steps evenly spaced from 0 (random
initialization, before any step) to the last step (the trained model), each
rounded to the nearest step, as DIR/ckpt_<step, 5 digits>.pt + .json. Each is
exported like the final model (BatchNorm folded, same sidecar with aliases
conv1..conv5) and shares DIR/tinycnn_labels.txt and the mean/std of the
training images, so all checkpoints have one preprocessing; the sidecar's
"notes" give the step, epoch and validation accuracy. Checkpointing does not
touch the random streams (the global torch RNG is restored around it), so the
trained weights are bit-identical with and without --checkpoints. With
--checkpoints and no --out only DIR is written. The checkpoints bundled in
models/checkpoints/ come from the command in models/checkpoints/README.txt.

Usage: /usr/bin/python3 models/train_bundled.py [--out models/tinycnn.pt]
       [--seed 0] [--epochs 6] [--count 8000] [--val-count 1000] [--threads 2]
       [--batch-size 64] [--lr 0.003] [--checkpoints DIR [--checkpoint-count 5]]
"""

import os

# libgomp reads this once, at import time of torch: idle OpenMP threads sleep
# instead of spinning, which otherwise stalls a 2-core machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import glob  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn.utils.fusion import fuse_conv_bn_eval  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _cli  # noqa: E402
import make_concepts  # noqa: E402

INPUT_SIZE = 96
CHANNELS = (16, 32, 64, 64, 128)  # conv1..conv5 output channels
CLASSES = tuple(f"{shape}-{texture}" for shape in make_concepts.SHAPES
                for texture in make_concepts.TEXTURES)
BATCH_SIZE = 64  # training default (--batch-size); also the evaluation batch
LEARNING_RATE = 3e-3  # default of --lr
WEIGHT_DECAY = 1e-4
TRAIN_STREAM, VAL_STREAM = 2, 3  # numpy seed streams ([seed, stream]) of the two splits
SIDECAR_FORMAT = "cnnviz-sidecar-1"
STATS_DECIMALS = 6  # mean/std are rounded once, then used for training and the sidecar
CHECKPOINT_LABELS = "tinycnn_labels.txt"  # labels file shared by the checkpoints in DIR


def conv_relu(in_channels, out_channels, batch_norm=False):
    """The convN block: Sequential(Conv2d 3x3 padding 1, [BatchNorm2d,] ReLU(inplace=True))."""
    if not batch_norm:
        return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
                             nn.ReLU(inplace=True))
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class TinyCNN(nn.Module):
    """Five 3x3 conv+ReLU blocks, three 2x2 max-pools, global average pool, linear.

    Module paths: conv1..conv5 (post-ReLU), convN.0 (conv), convN.1 (ReLU),
    pool1, pool2, pool4, avgpool, classifier. Input: N x 3 x H x W, already
    normalized; output: N x num_classes logits. With batch_norm=True (the
    training form) each block is Conv2d, BatchNorm2d, ReLU; fold_batch_norm
    turns it into the exported form.
    """

    def __init__(self, num_classes=len(CLASSES), batch_norm=False):
        super().__init__()
        c1, c2, c3, c4, c5 = CHANNELS
        self.conv1 = conv_relu(3, c1, batch_norm)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = conv_relu(c1, c2, batch_norm)
        self.pool2 = nn.MaxPool2d(2)
        self.conv3 = conv_relu(c2, c3, batch_norm)
        self.conv4 = conv_relu(c3, c4, batch_norm)
        self.pool4 = nn.MaxPool2d(2)
        self.conv5 = conv_relu(c4, c5, batch_norm)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c5, num_classes)

    def forward(self, x):
        x = self.pool1(self.conv1(x))
        x = self.pool2(self.conv2(x))
        x = self.pool4(self.conv4(self.conv3(x)))
        x = self.avgpool(self.conv5(x))
        return self.classifier(torch.flatten(x, 1))


def fold_batch_norm(trained):
    """A plain TinyCNN computing what the BatchNorm-trained `trained` computes in eval mode."""
    trained.eval()
    plain = TinyCNN(trained.classifier.out_features).eval()
    with torch.no_grad():
        for index in range(1, len(CHANNELS) + 1):
            block = getattr(trained, f"conv{index}")
            fused = fuse_conv_bn_eval(block[0], block[1])
            getattr(plain, f"conv{index}")[0].weight.copy_(fused.weight)
            getattr(plain, f"conv{index}")[0].bias.copy_(fused.bias)
        plain.classifier.load_state_dict(trained.classifier.state_dict())
    return plain


def render_split(seed, stream, count, size=INPUT_SIZE):
    """Render `count` samples at `size`: (uint8 N x 3 x size x size images, int64 class indices).

    render_sample's draws depend on the size, so other sizes give other scenes from the same stream."""
    rng = np.random.default_rng([seed, stream])
    images = np.empty((count, 3, size, size), np.uint8)
    labels = np.empty(count, np.int64)
    for i in range(count):
        sample = make_concepts.render_sample(rng, size)
        images[i] = sample.image.transpose(2, 0, 1)
        labels[i] = CLASSES.index(f"{sample.shapes[0]}-{sample.textures[0]}")
    return torch.from_numpy(images), torch.from_numpy(labels)


def channel_stats(images):
    """Per-channel mean and std of uint8 images on the [0, 1] scale, rounded (lists of 3 floats)."""
    pixels = images.permute(1, 0, 2, 3).reshape(3, -1).double() / 255
    mean, std = pixels.mean(dim=1).tolist(), pixels.std(dim=1).tolist()
    return [round(m, STATS_DECIMALS) for m in mean], [round(s, STATS_DECIMALS) for s in std]


def normalize(images, mean, std):
    """uint8 N x 3 x H x W -> float32, scaled to [0, 1] then (x - mean) / std."""
    mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (images.float() / 255 - mean) / std


def steps_per_epoch(count, batch_size=BATCH_SIZE):
    """Optimizer steps in one epoch over `count` training images (the last batch may be short)."""
    return -(-count // batch_size)


def checkpoint_steps(total_steps, count):
    """`count` >= 2 step numbers evenly spaced from 0 to total_steps, rounded half up."""
    return [(2 * i * total_steps + count - 1) // (2 * (count - 1)) for i in range(count)]


def train(model, images, labels, epochs, seed, batch_size=BATCH_SIZE, lr=LEARNING_RATE,
          at_steps=(), on_step=None):
    """Adam with a cosine learning-rate schedule; prints the loss per epoch.

    If given, on_step(step) is called after `step` optimizer steps for each
    step in at_steps (0: before the first); it may switch the model to eval
    mode (train mode is restored after it) but must not change its parameters,
    buffers or any random stream that training uses.
    """
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=WEIGHT_DECAY)
    steps = epochs * steps_per_epoch(len(labels), batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    order_generator = torch.Generator().manual_seed(seed)
    at_steps, step = frozenset(at_steps), 0

    def checkpoint():
        if on_step is not None and step in at_steps:
            on_step(step)
            model.train()

    model.train()
    checkpoint()
    for epoch in range(epochs):
        order, total = torch.randperm(len(labels), generator=order_generator), 0.0
        for start in range(0, len(labels), batch_size):
            batch = order[start:start + batch_size]
            loss = nn.functional.cross_entropy(model(images[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(batch)
            step += 1
            checkpoint()
        print(f"epoch {epoch + 1}/{epochs}: train loss {total / len(labels):.4f}", flush=True)


@torch.no_grad()
def check_same_function(reference, candidate, inputs, tolerance=1e-4):
    """Raise RuntimeError unless both eval-mode models give the same logits on `inputs`."""
    reference.eval()
    candidate.eval()
    difference = (reference(inputs) - candidate(inputs)).abs().max().item()
    if difference > tolerance:
        raise RuntimeError(f"folded model differs from the trained one by {difference:g}")


@torch.no_grad()
def accuracy(model, images, labels):
    """Fraction of correctly classified images (model in eval mode)."""
    model.eval()
    correct = sum(int((model(images[i:i + BATCH_SIZE]).argmax(1) == labels[i:i + BATCH_SIZE]).sum())
                  for i in range(0, len(labels), BATCH_SIZE))
    return correct / len(labels)


def sidecar(labels_file, mean, std, notes):
    """The cnnviz-sidecar-1 dictionary describing TinyCNN's input and labels."""
    return {
        "format": SIDECAR_FORMAT,
        "architecture": "tinycnn",
        "input": {"size": [INPUT_SIZE, INPUT_SIZE], "channels": 3, "channel_order": "RGB",
                  "range": [0.0, 1.0], "mean": mean, "std": std},
        "labels": labels_file,
        "aliases": {f"conv{i}": f"conv{i}" for i in range(1, len(CHANNELS) + 1)},
        "notes": notes,
    }


def export(model, out_path, mean, std, notes, labels_file=None):
    """Save TorchScript `out_path`, its sidecar .json and labels; verify the script.

    The labels go to labels_file (a name in out_path's folder), by default
    <stem>_labels.txt; the sidecar references it by that relative name.
    """
    model.eval()
    scripted = torch.jit.script(model)
    probe = torch.randn(2, 3, INPUT_SIZE, INPUT_SIZE, generator=torch.Generator().manual_seed(0))
    check_same_function(model, scripted, probe, tolerance=1e-5)
    stem = os.path.splitext(out_path)[0]
    scripted.save(out_path)
    labels_file = labels_file or os.path.basename(stem) + "_labels.txt"
    with open(os.path.join(os.path.dirname(out_path) or ".", labels_file), "w") as handle:
        handle.write("".join(name + "\n" for name in CLASSES))
    with open(stem + ".json", "w") as handle:
        json.dump(sidecar(labels_file, mean, std, notes), handle, indent=2)
        handle.write("\n")


def parse_args(argv=None):
    """Command-line arguments (see --help)."""
    parser = _cli.ArgumentParser(
        prog="train_bundled.py",
        description="Train TinyCNN (shape x texture of the dominant shape, 12 classes) on "
                    "synthetic concept images and export TorchScript + sidecar + labels.")
    parser.add_argument("--out", default=None,
                        help="TorchScript output; PATH.json and PATH_labels.txt are written "
                             "next to it (default models/tinycnn.pt, or none with --checkpoints)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--epochs", type=int, default=6, help="training epochs (default 6)")
    parser.add_argument("--count", type=int, default=8000, help="training images (default 8000)")
    parser.add_argument("--val-count", type=int, default=1000,
                        help="validation images (default 1000)")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1),
                        help="torch CPU threads (default min(2, cores))")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE,
                        help=f"training batch size (default {BATCH_SIZE})")
    parser.add_argument("--lr", type=float, default=LEARNING_RATE,
                        help=f"Adam learning rate, cosine-annealed to 0 (default {LEARNING_RATE})")
    parser.add_argument("--checkpoints", metavar="DIR", default=None,
                        help="also export DIR/ckpt_<step>.pt + .json at --checkpoint-count steps "
                             "evenly spaced from initialization to the trained model")
    parser.add_argument("--checkpoint-count", type=int, default=5, metavar="N",
                        help="number of checkpoints, first and last included (default 5)")
    args = parser.parse_args(argv)
    for name in ("epochs", "count", "val_count", "threads", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if not args.lr > 0:
        parser.error("--lr must be positive")
    total_steps = args.epochs * steps_per_epoch(args.count, args.batch_size)
    if args.checkpoint_count < 2:
        parser.error("--checkpoint-count must be at least 2 (initialization and trained model)")
    if args.checkpoint_count > total_steps + 1:
        parser.error(f"--checkpoint-count {args.checkpoint_count} exceeds the {total_steps + 1} "
                     f"distinct steps (0..{total_steps}) of this run")
    if args.out is None and args.checkpoints is None:
        args.out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tinycnn.pt")
    return args


def checkpoint_path(directory, step):
    """DIR/ckpt_<step padded to 5 digits>.pt."""
    return os.path.join(directory, f"ckpt_{step:05d}.pt")


def prepare_checkpoint_dir(directory, steps):
    """Create DIR; refuse if it holds ckpt_*.pt files this run would not overwrite."""
    os.makedirs(directory, exist_ok=True)
    planned = {os.path.abspath(checkpoint_path(directory, step)) for step in steps}
    existing = glob.glob(os.path.join(directory, "ckpt_*.pt"))
    stale = sorted(os.path.basename(path) for path in existing
                   if os.path.abspath(path) not in planned)
    if stale:
        raise _cli.UserError(f"{directory} holds checkpoints of another run ({', '.join(stale)}); "
                             f"remove them or choose another --checkpoints folder")


def main(argv=None):
    """Render data, train, report validation accuracy, export."""
    args = parse_args(argv)
    epoch_steps = steps_per_epoch(args.count, args.batch_size)
    total_steps = args.epochs * epoch_steps
    at_steps = (checkpoint_steps(total_steps, args.checkpoint_count)
                if args.checkpoints is not None else [])
    if args.out is not None:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    if args.checkpoints is not None:
        prepare_checkpoint_dir(args.checkpoints, at_steps)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    started = time.time()
    train_images, train_labels = render_split(args.seed, TRAIN_STREAM, args.count)
    val_images, val_labels = render_split(args.seed, VAL_STREAM, args.val_count)
    mean, std = channel_stats(train_images)
    print(f"rendered {args.count}+{args.val_count} images in {time.time() - started:.1f} s; "
          f"mean {np.round(mean, 4).tolist()} std {np.round(std, 4).tolist()}", flush=True)
    # channels_last runs the oneDNN convolutions ~1.3x faster here.
    model = TinyCNN(batch_norm=True).to(memory_format=torch.channels_last)
    train_x = normalize(train_images, mean, std).contiguous(memory_format=torch.channels_last)
    val_x = normalize(val_images, mean, std)
    command = (f"models/train_bundled.py --seed {args.seed} --epochs {args.epochs} "
               f"--count {args.count} --val-count {args.val_count}")
    if args.batch_size != BATCH_SIZE:
        command += f" --batch-size {args.batch_size}"
    if args.lr != LEARNING_RATE:
        command += f" --lr {args.lr:g}"
    recipe = f"Adam lr {args.lr} cosine, batch {args.batch_size}"

    def save_checkpoint(step):
        # fork_rng: TinyCNN() in fold_batch_norm draws from the global torch RNG.
        with torch.random.fork_rng(devices=[]):
            folded = fold_batch_norm(model)
        check_same_function(model, folded, val_x[:BATCH_SIZE])
        val_accuracy = accuracy(folded, val_x, val_labels)
        index = at_steps.index(step)
        stage = ("random initialization, before any optimizer step" if step == 0 else
                 "the trained model (final weights)" if step == total_steps else
                 "during training")
        notes = (f"Training checkpoint {index} of {len(at_steps) - 1} written by {command} "
                 f"--checkpoints DIR --checkpoint-count {len(at_steps)}: step {step} of "
                 f"{total_steps}, epoch {step / epoch_steps:.2f} of {args.epochs}, "
                 f"{stage}. 12 classes = dominant shape x texture on make_concepts.render_sample "
                 f"images, {recipe}, BatchNorm folded into the convolutions before export. "
                 f"mean/std = channel statistics of the training images, the same for every "
                 f"checkpoint. Val accuracy {val_accuracy:.4f} (chance {1 / len(CLASSES):.4f}).")
        path = checkpoint_path(args.checkpoints, step)
        with torch.random.fork_rng(devices=[]):
            export(folded, path, mean, std, notes, labels_file=CHECKPOINT_LABELS)
        print(f"checkpoint step {step}/{total_steps} (epoch "
              f"{step / epoch_steps:.2f}): val accuracy {val_accuracy:.4f}, "
              f"wrote {path} ({time.time() - started:.0f} s)", flush=True)

    train(model, train_x, train_labels, args.epochs, args.seed, args.batch_size, args.lr,
          at_steps, save_checkpoint)
    folded = fold_batch_norm(model)
    check_same_function(model, folded, val_x[:BATCH_SIZE])
    val_accuracy = accuracy(folded, val_x, val_labels)
    elapsed = time.time() - started
    print(f"val accuracy {val_accuracy:.4f} ({args.val_count} images, chance "
          f"{1 / len(CLASSES):.4f}); total {elapsed:.0f} s")
    notes = (f"Trained by {command}: 12 classes = dominant shape x "
             f"texture on make_concepts.render_sample images, {recipe}, "
             f"BatchNorm folded into the convolutions before export. "
             f"mean/std = channel statistics of the training images. "
             f"Val accuracy {val_accuracy:.4f} (chance {1 / len(CLASSES):.4f}).")
    if args.out is not None:
        export(folded, args.out, mean, std, notes)
        print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(_cli.run_main(main, "train_bundled.py"))
